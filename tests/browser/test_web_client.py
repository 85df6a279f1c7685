"""The web client in headless Chromium, against the real server: patients and doctors in their
own browser contexts, every change arriving live (no reload), no console error on any page, and
axe-core's WCAG 2.1 AA rules passing on the main pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pyotp
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser._pages import (
    SAO_PAULO,
    accessible,
    api_login,
    go,
    live,
    login_doctor,
    login_patient,
    mark,
    not_reloaded,
    tomorrow,
    zulu,
)
from tests.browser.conftest import ACCESS_TTL_SECONDS, allow_http_error, screenshot
from tests.e2e._accounts import (
    PASSWORD,
    cpf_for,
    doctor_body,
    patient_body,
    punctuated,
    register_doctor,
    register_patient,
)
from tests.support import ServerProcess

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def test_booking_flows_live_between_patient_and_doctor(
    new_page: Callable[..., Page], server: ServerProcess, unique: Callable[[], int]
) -> None:
    """A doctor publishes a weekly rule from its preview; a patient signs up, finds the doctor
    and books; the request reaches the doctor's inbox live, the acceptance brings the patient
    the meeting link live, a second patient's agenda greys the slot out live, and the first
    patient's cancellation opens it again there, all without a reload."""
    n = unique()
    specialty = f"cardio-{n}"
    second = unique()
    with httpx.Client(base_url=server.url) as http:
        doctor = register_doctor(http, n, specialty=specialty)
        register_patient(http, second)

    login_page = new_page()
    login_page.goto("/")
    expect(login_page).to_have_url(re.compile(r"/app/#/entrar$"))
    login_page.keyboard.press("Tab")  # the first stop is the skip link, with a visible focus ring
    focused = login_page.locator(":focus")
    expect(focused).to_have_text("Pular para o conteúdo")
    assert focused.evaluate("e => getComputedStyle(e).outlineStyle") == "solid"
    accessible(login_page)
    screenshot(login_page, "login")

    # The doctor logs in and publishes tomorrow 08:00-10:00 (two 50-minute slots).
    doc = new_page()
    login_doctor(doc, doctor["crm"])
    go(doc, "#/horarios")
    rule = doc.locator("#regra")
    day = tomorrow().isoformat()
    rule.get_by_label("De").fill(day)
    rule.get_by_label("Até").fill(day)
    rule.get_by_label("Início").fill("08:00")
    rule.get_by_label("Fim").fill("10:00")
    for weekday in ("Sábado", "Domingo"):
        rule.get_by_label(weekday).check()
    expect(doc.locator("#previa-total")).to_have_text("2 horário(s) serão criados.")
    expect(doc.locator("#previa li")).to_have_count(2)
    expect(doc.locator("#previa li").first).to_contain_text("08:00")
    accessible(doc)
    screenshot(doc, "doctor-publish")
    rule.get_by_role("button", name="Publicar horários").click()
    expect(doc.locator("#aviso")).to_have_text("2 horário(s) publicados.")
    go(doc, "#/pedidos")
    expect(doc.get_by_role("heading", level=1)).to_have_text("Pedidos de consulta")
    mark(doc)

    # A new patient signs up, searches by specialty, city and distance.
    pat = new_page()
    pat.goto("/app/#/cadastro")
    signup = pat.get_by_role("region", name="Sou paciente")
    body = patient_body(n)
    signup.get_by_label("Nome completo").fill(body["name"])
    signup.get_by_label("E-mail").fill(body["email"])
    signup.get_by_label("CPF").fill(punctuated(body["cpf"]))
    signup.get_by_label("Senha").fill(PASSWORD)
    accessible(pat)
    screenshot(pat, "signup")
    signup.get_by_role("button", name="Criar conta de paciente").click()
    expect(pat.get_by_role("heading", level=1)).to_have_text("Encontrar um médico")
    pat.get_by_label("Especialidade").select_option(specialty)
    pat.get_by_label("Perto de").select_option("São Paulo")
    pat.get_by_label("Distância máxima (km)").fill("50")
    pat.get_by_role("button", name="Buscar").click()
    card = pat.locator(f"li.doctor[data-doctor-id='{doctor['id']}']")
    expect(card).to_contain_text(doctor["name"])
    expect(card).to_contain_text("250,00")
    expect(card).to_contain_text("08:00")  # the next open slot, in the viewer's time zone
    expect(card).to_contain_text("0,0 km")
    accessible(pat)
    screenshot(pat, "search")
    card.get_by_role("link", name="Ver agenda e reservar").click()
    expect(pat.locator("#agenda")).to_have_attribute("data-live", "on")
    slots = pat.locator("#agenda button.slot")
    expect(slots).to_have_count(2)
    expect(slots.first).to_have_text("08:00")
    accessible(pat)

    # A second patient (CPF login) watches the same agenda.
    other = new_page()
    login_patient(other, punctuated(cpf_for(second)))
    go(other, f"#/medico/{doctor['id']}")
    expect(other.locator("#agenda")).to_have_attribute("data-live", "on")
    mark(other)
    mark(pat)

    slot_id = slots.first.get_attribute("data-slot-id")
    slots.first.focus()  # booking by keyboard: the confirmation takes the focus
    pat.keyboard.press("Enter")
    expect(pat.get_by_role("button", name="Confirmar reserva")).to_be_focused()
    pat.keyboard.press("Enter")
    expect(pat.get_by_role("heading", level=1)).to_have_text("Minhas consultas")
    mine = pat.locator("li.appointment")
    expect(mine).to_have_attribute("data-status", "requested")

    taken = other.locator(f"#agenda button[data-slot-id='{slot_id}']")
    expect(taken).to_have_attribute("data-status", "taken")
    expect(taken).to_be_disabled()
    expect(taken).to_have_text("08:00 (ocupado)")
    screenshot(other, "agenda-live")

    request = doc.locator("#pedidos li.appointment")
    expect(request).to_have_attribute("data-status", "requested")
    expect(request).to_contain_text(body["name"])  # who is coming, from the event itself
    not_reloaded(doc)
    accessible(doc)
    screenshot(doc, "doctor-inbox")
    request.get_by_role("button", name="Aceitar").click()
    expect(doc.locator("#pedidos li.appointment")).to_have_count(0)

    expect(mine).to_have_attribute("data-status", "confirmed")
    link = mine.locator("a.meeting-link")
    expect(link).to_be_visible()
    assert (link.get_attribute("href") or "").startswith("https://")
    not_reloaded(pat)
    accessible(pat)
    screenshot(pat, "appointments")

    go(doc, "#/agenda")
    expect(doc.locator("#semana li.wslot-booked")).to_have_count(
        1 if tomorrow() < _next_monday() else 0
    )
    accessible(doc)
    screenshot(doc, "doctor-week")

    mine.get_by_text("Cancelar consulta").click()
    mine.get_by_label("Justificativa (10 a 1000 caracteres)").fill("Não poderei comparecer.")
    mine.get_by_role("button", name="Confirmar cancelamento").click()
    expect(mine).to_have_attribute("data-status", "cancelled")
    expect(taken).to_have_attribute("data-status", "open")
    expect(taken).to_be_enabled()
    not_reloaded(other)


def _next_monday() -> date:
    today = datetime.now(SAO_PAULO).date()
    return today + timedelta(days=7 - today.weekday())


def test_a_shared_record_is_downloadable_by_the_doctor(
    new_page: Callable[..., Page],
    server: ServerProcess,
    unique: Callable[[], int],
    tmp_path: Path,
) -> None:
    """A patient uploads a record and shares it with a doctor of theirs; the doctor lists and
    downloads the same bytes; the patient sees the access in the log, revokes the share, and
    the doctor no longer sees the record."""
    n = unique()
    with httpx.Client(base_url=server.url) as http:
        doctor = register_doctor(http, n)
        register_patient(http, n)
        doctor_token = http.post(
            "/v1/auth/doctors/login", json={"crm": doctor["crm"], "uf": "SP", "password": PASSWORD}
        ).json()["access_token"]
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
        made = http.post(
            "/v1/me/slots",
            json={"slots": [{"start": zulu(start), "end": zulu(start + timedelta(minutes=50))}]},
            headers={"Authorization": f"Bearer {doctor_token}"},
        )
        assert made.status_code == 201, made.text
        patient_token = http.post(
            "/v1/auth/patients/login",
            json={"email": patient_body(n)["email"], "password": PASSWORD},
        ).json()["access_token"]
        booked = http.post(
            "/v1/appointments",
            json={"slot_id": made.json()["items"][0]["id"]},
            headers={"Authorization": f"Bearer {patient_token}"},
        )
        assert booked.status_code == 201, booked.text

    pat = new_page()
    login_patient(pat, patient_body(n)["email"])
    go(pat, "#/prontuario")
    upload = pat.locator("#enviar")
    upload.get_by_label("Arquivo").set_input_files(
        files=[{"name": "hemograma.pdf", "mimeType": "application/pdf", "buffer": PDF}]
    )
    upload.get_by_label("Tipo").select_option("exam")
    upload.get_by_label("Título (opcional)").fill("Hemograma")
    upload.get_by_role("button", name="Enviar").click()
    row = pat.locator("#registros tr[data-record-id]")
    expect(row).to_contain_text("Hemograma")
    share = pat.locator("#compartilhar")
    expect(share.get_by_label("Médico")).to_contain_text(doctor_body(n)["name"])
    share.get_by_label("Hemograma").check()
    share.get_by_role("button", name="Compartilhar").click()
    expect(pat.locator("#compartilhamentos li[data-active='true']")).to_have_count(1)
    accessible(pat)
    screenshot(pat, "records")

    doc = new_page()
    login_doctor(doc, doctor["crm"])
    go(doc, "#/compartilhados")
    shared = doc.locator("li.shared-record")
    expect(shared).to_contain_text("Hemograma")
    expect(doc.locator("#compartilhados h2")).to_have_text(patient_body(n)["name"])
    accessible(doc)
    screenshot(doc, "doctor-shared")
    with doc.expect_download() as info:
        shared.get_by_role("button", name="Baixar").click()
    download = info.value
    assert download.suggested_filename == "hemograma.pdf"
    saved = tmp_path / "download.pdf"
    download.save_as(saved)
    assert saved.read_bytes() == PDF

    pat.locator("section", has_text="Quem acessou").get_by_role("button", name="Atualizar").click()
    expect(pat.locator("#acessos tbody tr").first).to_contain_text(doctor_body(n)["name"])
    pat.locator("#compartilhamentos").get_by_role("button", name="Revogar").click()
    expect(pat.locator("#compartilhamentos li[data-active='false']")).to_have_count(1)

    go(doc, "#/pedidos")
    expect(doc.get_by_role("heading", level=1)).to_have_text("Pedidos de consulta")
    # No active share from that patient: the API answers 404 (docs/API.md), as for a stranger.
    allow_http_error(doc, 404, r"/v1/patients/[^/]+/records")
    go(doc, "#/compartilhados")
    expect(doc.locator("#compartilhados")).to_contain_text("Nenhum documento compartilhado")


def test_the_page_reconnects_and_resyncs_what_it_missed(
    new_page: Callable[..., Page], server: ServerProcess, unique: Callable[[], int]
) -> None:
    """The websocket drops and stays down while a slot is taken: the page shows that it is
    reconnecting, reconnects by itself with backoff, and re-reads the agenda, so the slot it
    never heard about greys out. The session also outlives its first access tokens: the page
    refreshes them before they expire and keeps working past their lifetime."""
    n, other = unique(), unique()  # n + 1 would be the next test's unique()
    with httpx.Client(base_url=server.url) as http:
        doctor = register_doctor(http, n)
        register_patient(http, n)
        register_patient(http, other)
        doctor_token = api_login(http, "doctors", {"crm": doctor["crm"], "uf": "SP"})
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
        made = http.post(
            "/v1/me/slots",
            json={"slots": [{"start": zulu(start), "end": zulu(start + timedelta(minutes=50))}]},
            headers={"Authorization": f"Bearer {doctor_token}"},
        )
        assert made.status_code == 201, made.text
        slot_id = made.json()["items"][0]["id"]

    pat = new_page()
    sockets: list[WebSocketRoute] = []
    down = {"value": False}

    def relay(ws: WebSocketRoute) -> None:
        if down["value"]:
            ws.close(code=1013, reason="test: server unreachable")
            return
        ws.connect_to_server()
        sockets.append(ws)

    pat.route_web_socket(re.compile(r"/v1/ws$"), relay)
    refreshed = []
    pat.on("request", lambda r: refreshed.append(r) if r.url.endswith("/v1/auth/refresh") else None)
    login_patient(pat, patient_body(n)["email"])
    go(pat, f"#/medico/{doctor['id']}")
    slot = pat.locator(f"#agenda button[data-slot-id='{slot_id}']")
    expect(slot).to_have_attribute("data-status", "open")
    expect(pat.locator("#agenda")).to_have_attribute("data-live", "on")
    mark(pat)

    down["value"] = True
    for ws in sockets:
        ws.close(code=1011, reason="test: connection lost")
    expect(pat.locator("#live")).to_have_attribute("data-state", "retrying")
    with httpx.Client(base_url=server.url) as http:
        token = api_login(http, "patients", {"email": patient_body(other)["email"]})
        booked = http.post(
            "/v1/appointments",
            json={"slot_id": slot_id},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert booked.status_code == 201, booked.text
    pat.wait_for_timeout(1000)
    expect(slot).to_have_attribute("data-status", "open")  # nothing arrived while down
    down["value"] = False
    live(pat)
    expect(slot).to_have_attribute("data-status", "taken")
    not_reloaded(pat)

    # Past the first access token's lifetime the page still works, on refreshed tokens.
    pat.wait_for_timeout((ACCESS_TTL_SECONDS + 3) * 1000)
    assert refreshed, "the page never refreshed its access token"
    live(pat)
    go(pat, "#/consultas")
    expect(pat.get_by_role("heading", level=1)).to_have_text("Minhas consultas")
    expect(pat.locator("li.appointment")).to_have_count(0)
    expect(pat.locator("#aviso")).not_to_have_attribute("data-kind", "error")
    not_reloaded(pat)


def test_a_doctor_with_two_factor_login_passes_the_code_step(
    new_page: Callable[..., Page], server: ServerProcess, unique: Callable[[], int]
) -> None:
    """For an account with 2FA, the right password leads to the code step (mfa_required), a
    wrong code is refused on the page, and a valid code opens the doctor's inbox."""
    n = unique()
    with httpx.Client(base_url=server.url) as http:
        doctor = register_doctor(http, n)
        token = api_login(http, "doctors", {"crm": doctor["crm"], "uf": "SP"})
        auth = {"Authorization": f"Bearer {token}"}
        secret = http.post("/v1/me/mfa/totp", json={"password": PASSWORD}, headers=auth).json()[
            "secret"
        ]
        activated = http.post(
            "/v1/me/mfa/totp/activate", json={"code": pyotp.TOTP(secret).now()}, headers=auth
        )
        assert activated.status_code == 200, activated.text
        recovery = activated.json()["recovery_codes"][0]

    doc = new_page()
    doc.goto("/")
    form = doc.get_by_role("region", name="Entrar como médico")
    form.get_by_label("CRM", exact=True).fill(doctor["crm"])
    form.get_by_label("Senha").fill(PASSWORD)
    form.get_by_role("button", name="Entrar").click()
    step = doc.get_by_role("region", name="Verificação em duas etapas")
    code = step.get_by_label("Código do aplicativo autenticador (ou de recuperação)")
    expect(code).to_be_focused()
    accessible(doc)
    allow_http_error(doc, 401, r"/v1/auth/mfa$")  # the wrong code, on purpose
    code.fill("000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    step.get_by_role("button", name="Confirmar").click()
    expect(doc.locator("#aviso")).to_have_attribute("data-kind", "error")
    code.fill(recovery)  # a recovery code: the TOTP code of this window was spent on activation
    step.get_by_role("button", name="Confirmar").click()
    expect(doc.get_by_role("heading", level=1)).to_have_text("Pedidos de consulta")
    live(doc)
