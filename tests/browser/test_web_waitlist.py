"""The waitlist in the web client, in headless Chromium against the real server: a patient
joins a doctor's waitlist from the agenda, sees their place in line, leaves; the doctor sees
their list in order; no console error and no axe-core violation on any of those pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
from playwright.sync_api import Page, expect

from tests.browser._pages import (
    SAO_PAULO,
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
    shown,
    zulu,
)
from tests.browser.conftest import allow_http_error, screenshot
from tests.e2e._accounts import doctor_body, patient_body, register_doctor, register_patient
from tests.support import ServerProcess


def test_a_patient_joins_a_waitlist_from_the_agenda_and_leaves_it(
    new_page: Callable[..., Page], server: ServerProcess, unique: Callable[[], int]
) -> None:
    """The doctor's only slot is taken; a patient joins the waitlist for a window around it
    from the agenda page (local times) and is first in line, a second patient (by the API)
    second; an overlapping second entry is refused in Portuguese; the doctor's list shows
    both in order; the first patient leaves and the doctor's list keeps the second, now 1st."""
    # three patients, three fresh numbers (n + 1 would be the next unique() of the run)
    n, *_ = numbers = [unique() for _ in range(3)]
    with httpx.Client(base_url=server.url) as http:
        doctor = register_doctor(http, n)
        for k in range(3):
            register_patient(http, numbers[k])
        [slot] = publish(http, doctor_token(http, doctor), in_days(2))
        book(http, patient_token(http, n), slot["id"])

    pat = new_page()
    login_patient(pat, patient_body(numbers[1])["email"])
    go(pat, f"#/medico/{doctor['id']}")
    expect(pat.locator(f"#agenda button[data-slot-id='{slot['id']}']")).to_be_disabled()
    join = pat.locator("#espera-entrar")
    start, end = in_days(1).astimezone(SAO_PAULO), in_days(3).astimezone(SAO_PAULO)
    join.get_by_label("A partir de").fill(start.strftime("%Y-%m-%dT%H:%M"))
    join.get_by_label("Até").fill(end.strftime("%Y-%m-%dT%H:%M"))
    accessible(pat)
    join.get_by_role("button", name="Entrar na lista de espera").click()
    expect(pat.locator("#espera-resultado")).to_contain_text("posição 1")

    with httpx.Client(base_url=server.url) as http:
        second = http.post(
            "/v1/waitlist",
            json={"doctor_id": doctor["id"], "from": zulu(in_days(2) - timedelta(hours=1)),
                  "to": zulu(in_days(4))},
            headers=bearer(patient_token(http, numbers[2])),
        )  # fmt: skip
        assert second.status_code == 201, second.text
        assert second.json()["position"] == 2

    allow_http_error(pat, 409, r"/v1/waitlist$")  # already_waiting, on purpose
    join.get_by_role("button", name="Entrar na lista de espera").click()
    expect(pat.locator("#aviso")).to_have_text(
        "Você já está na lista de espera deste médico num período que se sobrepõe a esse."
    )

    pat.get_by_role("link", name="Ver minha lista de espera").click()
    expect(pat.get_by_role("heading", level=1)).to_have_text("Minha lista de espera")
    entry = pat.locator("#espera li[data-entry-id]")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text(doctor_body(n)["name"])
    expect(entry).to_contain_text("Posição na fila: 1")
    # The window in the viewer's time zone, as typed.
    expect(entry).to_contain_text(f"De {start:%d/%m/%Y, %H:%M} a {end:%d/%m/%Y, %H:%M}")
    expect(entry).to_have_attribute("data-offered", "false")
    accessible(pat)
    screenshot(pat, "waitlist")

    doc = new_page()
    login_doctor(doc, doctor["crm"])
    doc.get_by_role("link", name="Lista de espera").click()
    expect(doc.get_by_role("heading", level=1)).to_have_text("Lista de espera")
    rows = doc.locator("#espera-medico li[data-entry-id]")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("1º")
    expect(rows.nth(1)).to_contain_text("2º")
    accessible(doc)
    screenshot(doc, "doctor-waitlist")

    entry.get_by_role("button", name="Sair da lista").click()
    expect(pat.locator("#espera")).to_contain_text("Você não está em nenhuma lista de espera")
    expect(pat.get_by_role("heading", level=1)).to_be_focused()
    doc.get_by_role("button", name="Atualizar").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("1º")
    assert rows.first.get_attribute("data-entry-id") == second.json()["id"]


def test_a_freed_slot_is_offered_live_to_the_first_in_line_then_the_next(
    new_page: Callable[..., Page], server: ServerProcess, unique: Callable[[], int]
) -> None:
    """Two patients wait for a doctor whose only slot is taken; it is cancelled: the first in
    line sees the slot held for them without a reload (and a notice), the doctor's list shows
    it held; the first declines, the second sees it offered live and books it from the offer,
    which fulfils their entry."""
    # three patients, three fresh numbers (n + 1 would be the next unique() of the run)
    n, *_ = numbers = [unique() for _ in range(3)]
    with httpx.Client(base_url=server.url) as http:
        doctor = register_doctor(http, n)
        for k in range(3):
            register_patient(http, numbers[k])
        [slot] = publish(http, doctor_token(http, doctor), in_days(2))
        taken = book(http, patient_token(http, n), slot["id"])
        window = {"doctor_id": doctor["id"], "from": zulu(in_days(1)), "to": zulu(in_days(3))}
        entries = []
        for k in (1, 2):
            r = http.post(
                "/v1/waitlist", json=window, headers=bearer(patient_token(http, numbers[k]))
            )
            assert r.status_code == 201, r.text
            entries.append(r.json())

    first, second = new_page(), new_page()
    for page, k in ((first, 1), (second, 2)):
        login_patient(page, patient_body(numbers[k])["email"])
        page.get_by_role("link", name="Lista de espera").click()
        expect(page.locator("#espera li[data-entry-id]")).to_have_attribute("data-offered", "false")
        mark(page)
    doc = new_page()
    login_doctor(doc, doctor["crm"])
    go(doc, "#/espera")
    expect(doc.locator("#espera-medico li[data-entry-id]")).to_have_count(2)

    with httpx.Client(base_url=server.url) as http:
        cancelled = http.post(
            f"/v1/appointments/{taken['id']}/cancel",
            json={"justification": "Não poderei ir, desculpe."},
            headers=bearer(patient_token(http, n)),
        )
        assert cancelled.status_code == 200, cancelled.text

    mine = first.locator("#espera li[data-entry-id]")
    expect(mine).to_have_attribute("data-offered", "true")
    offer = mine.get_by_role("group", name="Horário reservado para você")
    expect(offer).to_contain_text(f"Horário reservado para você: {shown(slot['start'])}")
    expect(first.locator("#aviso")).to_contain_text("Um horário ficou livre para você")
    not_reloaded(first)
    accessible(first)
    screenshot(first, "waitlist-offer")
    expect(second.locator("#espera li[data-entry-id]")).to_have_attribute("data-offered", "false")

    doc.get_by_role("button", name="Atualizar").click()
    held = doc.locator(f"#espera-medico li[data-entry-id='{entries[0]['id']}'] .offer-held")
    expect(held).to_contain_text(shown(slot["start"]))

    offer.get_by_role("button", name="Recusar oferta").click()
    expect(mine).to_have_attribute("data-offered", "false")
    expect(mine).to_contain_text("Posição na fila: 1")  # declining keeps the place in line

    theirs = second.locator("#espera li[data-entry-id]")
    expect(theirs).to_have_attribute("data-offered", "true")
    not_reloaded(second)
    theirs.get_by_role("button", name="Reservar este horário").click()
    expect(second.get_by_role("heading", level=1)).to_have_text("Minhas consultas")
    booked = second.locator("#consultas li.appointment")
    expect(booked).to_have_attribute("data-status", "requested")
    expect(booked.locator(".when")).to_contain_text(shown(slot["start"]))
    second.get_by_role("link", name="Lista de espera").click()
    expect(second.locator("#espera")).to_contain_text("Você não está em nenhuma lista de espera")
