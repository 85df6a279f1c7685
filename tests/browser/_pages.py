"""What the browser tests share: logging in through the pages, following in-app links, the
no-reload mark, the axe check, and API shortcuts that set a scene up (accounts, slots, a
booking) before the pages take over."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import axe_violations
from tests.e2e._accounts import PASSWORD, patient_body

SAO_PAULO = ZoneInfo("America/Sao_Paulo")


def tomorrow() -> date:
    return datetime.now(SAO_PAULO).date() + timedelta(days=1)


def zulu(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def shown(instant: str) -> str:
    """An API instant as the pages show it (pt-BR, São Paulo time): ``02/12/2026, 10:00``."""
    return f"{datetime.fromisoformat(instant).astimezone(SAO_PAULO):%d/%m/%Y, %H:%M}"


def mark(page: Page) -> None:
    """Tag the document, so a later check proves that no reload happened in between."""
    page.evaluate("window.__noReload = 'kept'")


def not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__noReload") == "kept"


def accessible(page: Page) -> None:
    violations = axe_violations(page)
    assert violations == [], violations


def go(page: Page, route: str) -> None:
    """Follow an in-app link (a hash change: the session in memory stays)."""
    page.evaluate(f"location.hash = {route!r}")


def live(page: Page) -> None:
    expect(page.locator("#live")).to_have_attribute("data-state", "on")


def login_patient(page: Page, identifier: str, password: str = PASSWORD) -> None:
    page.goto("/")
    form = page.get_by_role("region", name="Entrar como paciente")
    form.get_by_label("E-mail ou CPF").fill(identifier)
    form.get_by_label("Senha").fill(password)
    form.get_by_label("Senha").press("Enter")  # forms submit from the keyboard
    expect(page.get_by_role("heading", level=1)).to_have_text("Encontrar um médico")
    live(page)


def login_doctor(page: Page, crm: str) -> None:
    page.goto("/")
    form = page.get_by_role("region", name="Entrar como médico")
    form.get_by_label("CRM", exact=True).fill(crm)
    form.get_by_label("UF do CRM").select_option("SP")
    form.get_by_label("Senha").fill(PASSWORD)
    form.get_by_role("button", name="Entrar").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Pedidos de consulta")
    live(page)


def api_login(http: httpx.Client, who: str, body: dict[str, str]) -> str:
    r = http.post(f"/v1/auth/{who}/login", json={**body, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def doctor_token(http: httpx.Client, doctor: dict[str, Any]) -> str:
    return api_login(http, "doctors", {"crm": doctor["crm"], "uf": "SP"})


def patient_token(http: httpx.Client, n: int) -> str:
    return api_login(http, "patients", {"email": patient_body(n)["email"]})


def publish(http: httpx.Client, token: str, *starts: datetime) -> list[dict[str, Any]]:
    """50-minute slots at ``starts`` (UTC), published by the doctor whose token it is."""
    slots = [{"start": zulu(s), "end": zulu(s + timedelta(minutes=50))} for s in starts]
    made = http.post("/v1/me/slots", json={"slots": slots}, headers=bearer(token))
    assert made.status_code == 201, made.text
    return list(made.json()["items"])


def book(http: httpx.Client, token: str, slot_id: str) -> dict[str, Any]:
    booked = http.post("/v1/appointments", json={"slot_id": slot_id}, headers=bearer(token))
    assert booked.status_code == 201, booked.text
    return dict(booked.json())


def accept(http: httpx.Client, token: str, appointment_id: str) -> dict[str, Any]:
    done = http.post(f"/v1/appointments/{appointment_id}/accept", headers=bearer(token))
    assert done.status_code == 200, done.text
    return dict(done.json())


def in_days(days: int, hour: int = 13) -> datetime:
    """``days`` from now at ``hour``:00 UTC (the tests' slots: on a round hour, in the future)."""
    day = datetime.now(UTC).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
