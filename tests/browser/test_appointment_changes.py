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
    SAO_PAULO,
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
    shown,
    zulu,
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


def test_a_patient_moves_a_confirmed_appointment_and_the_doctor_decides_live(
    new_page: Callable[..., Page], server: ServerProcess, unique: Callable[[], int]
) -> None:
    """From "Minhas consultas" a patient opens the doctor's agenda in move mode and picks
    another open slot by keyboard; the confirmed appointment shows the pending move, the
    request reaches the doctor's inbox live; accepted, the patient's page moves it live; a
    second move refused by the doctor leaves it where it was, and the patient is told."""
    n = unique()
    with httpx.Client(base_url=server.url) as http:
        doctor = register_doctor(http, n)
        register_patient(http, n)
        doc_token = doctor_token(http, doctor)
        first, second, third = publish(
            http, doc_token, in_days(2, 13), in_days(2, 15), in_days(3, 13)
        )
        appt = book(http, patient_token(http, n), first["id"])
        accept(http, doc_token, appt["id"])

    doc = new_page()
    login_doctor(doc, doctor["crm"])
    mark(doc)
    pat = new_page()
    login_patient(pat, patient_body(n)["email"])
    go(pat, "#/consultas")
    mine = pat.locator(f"#consultas li[data-appointment-id='{appt['id']}']")
    expect(mine).to_have_attribute("data-status", "confirmed")
    mark(pat)

    mine.get_by_role("link", name="Remarcar consulta").click()
    expect(pat.get_by_role("heading", level=1)).to_have_text("Remarcar consulta")
    expect(pat.locator("p.current")).to_contain_text(shown(first["start"]))
    expect(pat.locator("#agenda")).to_have_attribute("data-live", "on")
    expect(pat.locator(f"#agenda button[data-slot-id='{first['id']}']")).to_be_disabled()
    expect(pat.locator("#espera-entrar")).to_have_count(0)  # no waitlist while moving
    accessible(pat)
    pat.locator(f"#agenda button[data-slot-id='{second['id']}']").focus()
    pat.keyboard.press("Enter")
    expect(pat.get_by_role("button", name="Confirmar remarcação")).to_be_focused()
    pat.keyboard.press("Enter")
    expect(pat.get_by_role("heading", level=1)).to_have_text("Minhas consultas")
    pending = mine.locator(".pending-move")
    expect(pending).to_contain_text(f"Remarcação pedida para {shown(second['start'])}")
    expect(mine.locator(".when")).to_contain_text(shown(first["start"]))  # still there
    expect(mine.get_by_role("link", name="Remarcar consulta")).to_have_count(0)
    accessible(pat)
    screenshot(pat, "reschedule-pending")

    request = doc.locator(f"#pedidos li[data-appointment-id='{appt['id']}']")
    expect(request).to_contain_text(f"pediu para remarcar para {shown(second['start'])}")
    expect(request).to_contain_text(patient_body(n)["name"])
    not_reloaded(doc)
    accessible(doc)
    screenshot(doc, "doctor-move")
    request.get_by_role("button", name="Aceitar remarcação").click()
    expect(request).to_have_count(0)

    expect(mine.locator(".when")).to_contain_text(shown(second["start"]))
    expect(pending).to_have_count(0)
    expect(mine).to_have_attribute("data-status", "confirmed")
    expect(pat.locator("#aviso")).to_have_text(f"Consulta remarcada para {shown(second['start'])}.")

    # Again, to the third slot: this time the doctor refuses and it stays on the second.
    mine.get_by_role("link", name="Remarcar consulta").click()
    pat.locator(f"#agenda button[data-slot-id='{third['id']}']").click()
    pat.get_by_role("button", name="Confirmar remarcação").click()
    expect(pending).to_be_visible()
    request.get_by_role("button", name="Recusar remarcação").click()
    expect(request).to_have_count(0)
    expect(pending).to_have_count(0)
    expect(mine.locator(".when")).to_contain_text(shown(second["start"]))
    expect(pat.locator("#aviso")).to_contain_text("O médico recusou a remarcação")
    not_reloaded(pat)
    not_reloaded(doc)


def test_time_off_lists_the_confirmed_appointments_in_its_way_and_can_cancel_them(
    new_page: Callable[..., Page], server: ServerProcess, unique: Callable[[], int]
) -> None:
    """A doctor's time off over an open slot, a request and a confirmed appointment is first
    refused (409 confirmed_in_range): the page lists the confirmed one; with "cancel the
    confirmed ones" and a justification it goes through, the counts are shown, the patient's
    page shows the cancellation live; the time off is listed and can be removed."""
    n, other = unique(), unique()  # n + 1 would be the next test's unique()
    with httpx.Client(base_url=server.url) as http:
        doctor = register_doctor(http, n)
        register_patient(http, n)
        register_patient(http, other)
        doc_token = doctor_token(http, doctor)
        _open, taken, asked = publish(
            http, doc_token, in_days(4, 13), in_days(4, 15), in_days(4, 17)
        )
        confirmed = book(http, patient_token(http, n), taken["id"])
        accept(http, doc_token, confirmed["id"])
        book(http, patient_token(http, other), asked["id"])

    pat = new_page()
    login_patient(pat, patient_body(n)["email"])
    go(pat, "#/consultas")
    mine = pat.locator(f"#consultas li[data-appointment-id='{confirmed['id']}']")
    expect(mine).to_have_attribute("data-status", "confirmed")
    mark(pat)

    doc = new_page()
    login_doctor(doc, doctor["crm"])
    doc.get_by_role("link", name="Ausências").click()
    expect(doc.get_by_role("heading", level=1)).to_have_text("Ausências")
    form = doc.locator("#ausencia")
    start = in_days(4, 12).astimezone(SAO_PAULO)
    end = in_days(4, 19).astimezone(SAO_PAULO)
    form.get_by_label("De", exact=True).fill(f"{start:%Y-%m-%dT%H:%M}")
    form.get_by_label("Até").fill(f"{end:%Y-%m-%dT%H:%M}")
    form.get_by_label("Motivo (opcional)").fill("Congresso de cardiologia")
    accessible(doc)
    allow_http_error(doc, 409, r"/v1/me/time-off$")  # confirmed_in_range, on purpose
    form.get_by_role("button", name="Registrar ausência").click()
    conflict = doc.locator(f"#conflitos li[data-appointment-id='{confirmed['id']}']")
    expect(conflict).to_contain_text(shown(taken["start"]))
    expect(doc.locator("#conflitos li")).to_have_count(1)  # the request is not in the way
    box = form.get_by_label("Cancelar as consultas confirmadas nesse período")
    expect(box).to_be_focused()
    accessible(doc)
    screenshot(doc, "doctor-time-off")
    doc.keyboard.press("Space")
    reason = "Estarei num congresso; por favor remarque."
    form.get_by_label("Justificativa para os pacientes (10 a 1000 caracteres)").fill(reason)
    form.get_by_role("button", name="Registrar ausência").click()
    notice = doc.locator("#aviso")
    expect(notice).to_contain_text("Ausência registrada:")
    expect(notice).to_contain_text("1 pedido recusado")
    expect(notice).to_contain_text("1 consulta cancelada")
    expect(doc.locator("#conflitos li")).to_have_count(0)
    listed = doc.locator("#ausencias li[data-time-off-id]")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text("Congresso de cardiologia")
    expect(listed).to_contain_text(shown(zulu(in_days(4, 12))))

    expect(mine).to_have_attribute("data-status", "cancelled")
    expect(mine).to_contain_text(f"Cancelada pelo médico: {reason}")
    not_reloaded(pat)

    listed.get_by_role("button", name="Remover").click()
    expect(listed).to_have_count(0)
    expect(doc.locator("#ausencias")).to_contain_text("Nenhuma ausência registrada.")
