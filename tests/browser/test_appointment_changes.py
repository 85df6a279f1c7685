"""The web client's changes to an appointment after it is made, in headless Chromium against
the real server: a doctor cancels a confirmed one (the patient sees it live), a patient rates
a consultation that has ended; every page free of console errors and axe-core violations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from engine.seed import SEED_PASSWORD
from tests.browser._pages import (
    accept,
    accessible,
    bearer,
    book,
    doctor_token,
    go,
    in_days,
    login_doctor,
    login_patient,
    mark,
    not_reloaded,
    patient_token,
    publish,
)
from tests.browser.conftest import allow_http_error, screenshot
from tests.e2e._accounts import patient_body, register_doctor, register_patient
from tests.support import ServerProcess, timeout

BIN = Path(sys.executable).parent


def test_a_doctor_cancels_a_confirmed_appointment_and_the_patient_sees_it_live(
    new_page: Callable[..., Page], server: ServerProcess, unique: Callable[[], int]
) -> None:
    """On the agenda page the doctor opens a confirmed appointment's cancel box by keyboard; a
    justification under 10 characters stays in the page (nothing is sent), a real one cancels
    it; the patient's list shows it cancelled by the doctor, with the justification, live."""
    n = unique()
    with httpx.Client(base_url=server.url) as http:
        doctor = register_doctor(http, n)
        register_patient(http, n)
        doc_token = doctor_token(http, doctor)
        [slot] = publish(http, doc_token, in_days(2))
        appt = book(http, patient_token(http, n), slot["id"])
        accept(http, doc_token, appt["id"])

    pat = new_page()
    login_patient(pat, patient_body(n)["email"])
    go(pat, "#/consultas")
    mine = pat.locator(f"#consultas li[data-appointment-id='{appt['id']}']")
    expect(mine).to_have_attribute("data-status", "confirmed")
    mark(pat)

    doc = new_page()
    login_doctor(doc, doctor["crm"])
    go(doc, "#/agenda")
    row = doc.locator(f"#confirmadas li[data-appointment-id='{appt['id']}']")
    expect(row).to_contain_text(patient_body(n)["name"])
    row.get_by_text("Cancelar consulta").focus()
    doc.keyboard.press("Enter")  # the disclosure opens from the keyboard
    text = row.get_by_label("Justificativa (10 a 1000 caracteres)")
    expect(text).to_be_visible()
    text.fill("curta")
    row.get_by_role("button", name="Confirmar cancelamento").click()
    assert text.evaluate("e => e.validity.tooShort")  # the browser keeps it: no request made
    expect(row).to_be_visible()
    reason = "Emergência no hospital; por favor remarque."
    text.fill(reason)
    accessible(doc)
    row.get_by_role("button", name="Confirmar cancelamento").click()
    expect(doc.locator("#aviso")).to_have_text("Consulta cancelada: o paciente foi avisado.")
    expect(row).to_have_count(0)  # no longer among the upcoming confirmed ones

    expect(mine).to_have_attribute("data-status", "cancelled")
    expect(mine).to_contain_text(f"Cancelada pelo médico: {reason}")
    expect(mine.get_by_text("Cancelar consulta")).to_have_count(0)
    not_reloaded(pat)
    accessible(pat)


def _seed_a_past_consultation(server: ServerProcess, tmp_path: Path) -> dict[str, str]:
    """``healthmed seed --past 1`` on the server's own Redis and store: a patient with a
    confirmed consultation that has ended (booked and accepted on a clock set 30 days back)."""
    creds = tmp_path / "seed.json"
    env = {
        **os.environ,
        "HEALTHMED_ENV": "test",
        "HEALTHMED_DATA_DIR": str(server.data_dir),
        "HEALTHMED_REDIS_URL": server.env["HEALTHMED_REDIS_URL"],
    }
    subprocess.run(
        [BIN / "healthmed", "seed", "--doctors", "1", "--patients", "1", "--days", "1",
         "--past", "1", "--out", str(creds)],
        env=env, check=True, timeout=timeout(120), capture_output=True,
    )  # fmt: skip
    patient = json.loads(creds.read_text())["patients"][0]
    assert patient["past_appointment"], patient
    return {"email": patient["email"], "appointment": patient["past_appointment"]}


def test_a_patient_rates_a_consultation_that_has_ended(
    new_page: Callable[..., Page], server: ServerProcess, tmp_path: Path
) -> None:
    """A consultation that ended a month ago is listed under "Consultas anteriores" with a
    rating form: stars chosen by keyboard and a comment reach the doctor's rating; a second
    session's try is answered "already rated" (409) and changes nothing."""
    seeded = _seed_a_past_consultation(server, tmp_path)

    def get(path: str) -> dict[str, Any]:
        """GET as the seeded patient, on a fresh login (the tier's tokens live 20 s)."""
        with httpx.Client(base_url=server.url) as http:
            login = {"email": seeded["email"], "password": SEED_PASSWORD}
            token = http.post("/v1/auth/patients/login", json=login).json()["access_token"]
            r = http.get(path, headers=bearer(token))
        assert r.status_code == 200, r.text
        return dict(r.json())

    appt = get(f"/v1/appointments/{seeded['appointment']}")
    assert appt["status"] == "confirmed"

    pat = new_page()
    login_patient(pat, seeded["email"], SEED_PASSWORD)
    go(pat, "#/consultas")
    past = pat.locator(f"#anteriores li[data-appointment-id='{appt['id']}']")
    expect(past).to_have_attribute("data-status", "confirmed")
    expect(past.get_by_text("Cancelar consulta")).to_have_count(0)  # it has ended
    past.get_by_text("Avaliar consulta").focus()
    pat.keyboard.press("Enter")
    pat.keyboard.press("Tab")  # into the stars: the first one, then arrows move the choice
    expect(past.get_by_label("1 estrela")).to_be_focused()
    for _ in range(3):
        pat.keyboard.press("ArrowRight")
    expect(past.get_by_label("4 estrelas")).to_be_checked()
    past.get_by_label("Comentário (opcional)").fill("Atenciosa e pontual.")
    accessible(pat)
    screenshot(pat, "rating")
    past.get_by_role("button", name="Enviar avaliação").click()
    thanks = past.locator(".rated")
    expect(thanks).to_have_text("Sua avaliação: 4 estrelas. Obrigado!")
    expect(thanks).to_be_focused()

    rating = get(f"/v1/doctors/{appt['doctor_id']}")["rating"]
    assert rating["count"] == 1, rating
    assert rating["average"] == 4, rating

    again = new_page()
    allow_http_error(again, 409, r"/rating$")  # already rated: the API's answer, on purpose
    login_patient(again, seeded["email"], SEED_PASSWORD)
    go(again, "#/consultas")
    row = again.locator(f"#anteriores li[data-appointment-id='{appt['id']}']")
    row.get_by_text("Avaliar consulta").click()
    row.get_by_label("5 estrelas").check()
    row.get_by_role("button", name="Enviar avaliação").click()
    expect(row.locator(".rated")).to_have_text("Esta consulta já foi avaliada.")
    assert get(f"/v1/doctors/{appt['doctor_id']}")["rating"] == rating
