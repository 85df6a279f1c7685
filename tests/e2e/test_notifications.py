"""Notifications end to end: the real server sends every booking event's e-mails to an SMTP
sink (aiosmtpd), reminders arrive at their time (and never for a cancelled appointment), a
SIGKILLed server loses nothing and resends with the same Message-ID, and a hanging mail
server never slows a booking."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e._accounts import bearer, login_patient, register_patient
from tests.e2e.test_booking import later, make_slots, new_doctor
from tests.mail_sink import MailSink, Received
from tests.support import RedisServer, ServerProcess, free_port, timeout

REMINDER_MINUTES = 16
"""Reminders 16 minutes ahead: a slot 16 minutes and some seconds away can still be booked
(requests close 15 minutes before the start) and reminds within seconds."""

MAIL_ENV = {
    "HEALTHMED_MAIL_POLL_SECONDS": "0.2",
    "HEALTHMED_MAIL_RETRY_SECONDS": "0.5",
    "HEALTHMED_MAIL_LEASE_SECONDS": "4",
    "HEALTHMED_REMINDER_MINUTES": str(REMINDER_MINUTES),
    "HEALTHMED_REQUEST_TTL_SECONDS": "8",
    "HEALTHMED_ENV": "test",
}


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mail_server(
    module_redis: RedisServer, sink: MailSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        port=free_port(),
        data_dir=Path(tmp_path_factory.mktemp("mail-server")),
        env={**MAIL_ENV, "HEALTHMED_REDIS_URL": module_redis.url, "HEALTHMED_MAIL_URL": sink.url},
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def client(mail_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mail_server.url, timeout=30) as c:
        yield c


def people(http: httpx.Client, unique: Callable[[], int]) -> dict[str, Any]:
    doctor_id, doc = new_doctor(http, unique)
    profile = register_patient(http, unique())
    me = http.get("/v1/me", headers=doc).json()
    return {
        "doctor_id": doctor_id, "doc": doc, "doctor_email": me["email"],
        "patient_id": profile["id"], "pat": bearer(login_patient(http, profile)),
        "patient_email": profile["email"],
    }  # fmt: skip


def of(sink: MailSink, email: str, kind: str | None = None) -> list[Received]:
    return [r for r in sink.messages(email) if kind is None or r.kind == kind]


def wait_kind(sink: MailSink, email: str, kind: str, seconds: float = 10) -> list[Received]:
    deadline = time.monotonic() + timeout(seconds)
    while time.monotonic() < deadline:
        found = of(sink, email, kind)
        if found:
            return found
        time.sleep(0.05)
    raise TimeoutError(f"no {kind} message arrived")


def settle(sink: MailSink, seconds: float = 1.5) -> None:
    """Give a wrong extra message time to show up (the drainer polls every 0.2 s)."""
    time.sleep(timeout(seconds))


def event_of(received: Received) -> Any:
    cal = received.invitation()
    assert cal is not None, "expected a text/calendar part"
    [event] = cal.walk("VEVENT")
    return cal, event


def test_every_booking_event_mails_the_right_people(
    client: httpx.Client, sink: MailSink, unique: Callable[[], int]
) -> None:
    """Request → doctor and patient; accept → both with METHOD:REQUEST (their own link);
    the patient's cancellation → the doctor only, METHOD:CANCEL with the same UID and a
    higher SEQUENCE; refusal and expiry → the patient only."""
    p = people(client, unique)
    doctor, patient = p["doctor_email"], p["patient_email"]
    slots = make_slots(client, p["doc"], [(later(1), later(2)), (later(3), later(4)),
                                          (later(5), later(6))])  # fmt: skip
    appt = client.post("/v1/appointments", headers=p["pat"], json={"slot_id": slots[0]}).json()
    sink.wait_for(1, to=doctor)
    sink.wait_for(1, to=patient)
    assert [r.kind for r in of(sink, doctor)] == ["appointment.requested"]
    assert [r.kind for r in of(sink, patient)] == ["appointment.requested"]
    assert of(sink, doctor)[0].invitation() is None

    r = client.post(f"/v1/appointments/{appt['id']}/accept", headers=p["doc"])
    assert r.status_code == 200, r.text
    sink.wait_for(2, to=doctor)
    sink.wait_for(2, to=patient)
    uid = f"{appt['id']}@healthmed"
    for email, headers in ((doctor, p["doc"]), (patient, p["pat"])):
        [confirmed] = of(sink, email, "appointment.confirmed")
        cal, event = event_of(confirmed)
        assert cal["METHOD"] == "REQUEST"
        assert str(event["UID"]) == uid
        assert int(event["SEQUENCE"]) == 0
        assert event.decoded("DTSTART").utcoffset() == timedelta(0)
        meeting = client.get(f"/v1/appointments/{appt['id']}/meeting", headers=headers).json()
        assert str(event["URL"]) == meeting["url"]  # that person's own link
        assert event.decoded("DTSTART") == datetime.fromisoformat(meeting["starts_at"])

    r = client.post(
        f"/v1/appointments/{appt['id']}/cancel", headers=p["pat"],
        json={"justification": "Não poderei comparecer, desculpe."},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    [cancelled] = wait_kind(sink, doctor, "appointment.cancelled")
    cal, event = event_of(cancelled)
    assert cal["METHOD"] == "CANCEL"
    assert str(event["UID"]) == uid
    assert int(event["SEQUENCE"]) == 1

    second = client.post("/v1/appointments", headers=p["pat"], json={"slot_id": slots[1]}).json()
    r = client.post(
        f"/v1/appointments/{second['id']}/refuse", headers=p["doc"], json={"reason": "Agenda cheia"}
    )
    assert r.status_code == 200, r.text
    third = client.post("/v1/appointments", headers=p["pat"], json={"slot_id": slots[2]}).json()
    assert third["status"] == "requested"
    wait_kind(sink, patient, "appointment.refused")
    wait_kind(sink, patient, "appointment.expired", seconds=25)  # request TTL: 8 s
    settle(sink)
    assert sorted(r.kind for r in of(sink, patient)) == sorted([
        "appointment.requested", "appointment.confirmed", "appointment.requested",
        "appointment.refused", "appointment.requested", "appointment.expired",
    ])  # fmt: skip
    assert sorted(r.kind for r in of(sink, doctor)) == sorted([
        "appointment.requested", "appointment.confirmed", "appointment.cancelled",
        "appointment.requested", "appointment.requested",
    ])  # fmt: skip
    [refused] = of(sink, patient, "appointment.refused")
    assert "Motivo: Agenda cheia" in refused.message.get_body(("plain",)).get_content()
    ids = [r.message_id for r in sink.messages(patient) + sink.messages(doctor)]
    assert len(ids) == len(set(ids))

    listed = client.get("/v1/me/notifications", headers=p["pat"], params={"limit": 100})
    assert listed.status_code == 200, listed.text
    kinds = [(i["kind"], i["status"]) for i in listed.json()["items"]]
    assert len(kinds) == 6
    assert all(status == "sent" for _, status in kinds)
    assert kinds[0][0] == "appointment.expired"  # newest first


def soon(seconds: float) -> datetime:
    """A slot start ``REMINDER_MINUTES`` and ``seconds`` from now, to the second."""
    return (datetime.now(UTC) + timedelta(minutes=REMINDER_MINUTES, seconds=seconds)).replace(
        microsecond=0
    )


def confirm(http: httpx.Client, p: dict[str, Any], start: datetime) -> dict[str, Any]:
    [slot] = make_slots(http, p["doc"], [(start, start + timedelta(minutes=30))])
    appt = http.post("/v1/appointments", headers=p["pat"], json={"slot_id": slot}).json()
    r = http.post(f"/v1/appointments/{appt['id']}/accept", headers=p["doc"])
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_reminders_arrive_at_their_time_and_never_for_a_cancelled_one(
    client: httpx.Client, sink: MailSink, unique: Callable[[], int]
) -> None:
    """With HEALTHMED_REMINDER_MINUTES=16, both participants of a confirmed appointment get a
    reminder 16 minutes before it starts, not before; a cancelled appointment's never comes;
    nor does one whose time had passed when the appointment was confirmed."""
    kept, dropped, late = people(client, unique), people(client, unique), people(client, unique)
    start = soon(timeout(8))
    due = (start - timedelta(minutes=REMINDER_MINUTES)).timestamp()
    appt = confirm(client, kept, start)
    cancelled = confirm(client, dropped, start)
    r = client.post(
        f"/v1/appointments/{cancelled['id']}/cancel", headers=dropped["pat"],
        json={"justification": "Emergência no hospital hoje."},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    late_start = soon(2)
    [slot] = make_slots(client, late["doc"], [(late_start, late_start + timedelta(minutes=30))])
    late_appt = client.post("/v1/appointments", headers=late["pat"], json={"slot_id": slot}).json()
    while time.time() < (late_start - timedelta(minutes=REMINDER_MINUTES)).timestamp() + 0.5:
        time.sleep(0.1)
    r = client.post(f"/v1/appointments/{late_appt['id']}/accept", headers=late["doc"])
    assert r.status_code == 200, r.text

    for email in (kept["patient_email"], kept["doctor_email"]):
        [reminder] = wait_kind(sink, email, "appointment.reminder", seconds=30)
        assert reminder.at >= due
        _, event = event_of(reminder) if reminder.invitation() else (None, None)
        assert event is None  # a reminder is no invitation
        assert reminder.message["To"].addresses[0].addr_spec == email
    assert appt["status"] == "confirmed"
    wait_kind(sink, late["patient_email"], "appointment.confirmed")
    settle(sink, 2)
    for email in (dropped["patient_email"], dropped["doctor_email"], late["patient_email"],
                  late["doctor_email"]):  # fmt: skip
        assert of(sink, email, "appointment.reminder") == []
    listed = client.get("/v1/me/notifications", headers=dropped["pat"]).json()["items"]
    assert "appointment.reminder" not in [i["kind"] for i in listed]


def test_the_calendar_feed_shows_only_its_owners_appointments(
    client: httpx.Client, unique: Callable[[], int]
) -> None:
    """GET /v1/me/calendar gives a stable URL whose .ics lists the owner's confirmed and
    requested appointments with their own link; another user's feed does not show them;
    rotation makes the old URL 404; the export has the notifications, erasure removes them."""
    import icalendar

    p, other = people(client, unique), people(client, unique)
    confirmed = confirm(client, p, later(2))
    [slot] = make_slots(client, p["doc"], [(later(4), later(5))])
    requested = client.post("/v1/appointments", headers=p["pat"], json={"slot_id": slot}).json()
    url = client.get("/v1/me/calendar", headers=p["pat"]).json()["url"]
    assert client.get("/v1/me/calendar", headers=p["pat"]).json()["url"] == url
    feed = httpx.get(url)
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("text/calendar")
    events = {str(e["UID"]): e for e in icalendar.Calendar.from_ical(feed.content).walk("VEVENT")}
    mine = client.get(f"/v1/appointments/{confirmed['id']}/meeting", headers=p["pat"]).json()
    assert str(events[f"{confirmed['id']}@healthmed"]["STATUS"]) == "CONFIRMED"
    assert str(events[f"{confirmed['id']}@healthmed"]["URL"]) == mine["url"]
    assert str(events[f"{requested['id']}@healthmed"]["STATUS"]) == "TENTATIVE"
    other_url = client.get("/v1/me/calendar", headers=other["pat"]).json()["url"]
    assert other_url != url
    assert icalendar.Calendar.from_ical(httpx.get(other_url).content).walk("VEVENT") == []

    rotated = client.post("/v1/me/calendar/rotate", headers=p["pat"]).json()["url"]
    assert rotated != url
    assert httpx.get(rotated).status_code == 200
    assert httpx.get(url).status_code == 404
    assert httpx.get(url.removesuffix(".ics") + ".txt").status_code == 404
    assert httpx.get(url.rsplit("/", 1)[0] + "/not-a-token.ics").status_code == 404

    export = client.get("/v1/me/export", headers=p["pat"]).json()
    assert {n["kind"] for n in export["notifications"]} >= {"appointment.requested"}
    r = client.request(
        "DELETE", "/v1/me", headers=p["pat"], json={"password": "correct horse battery"}
    )
    assert r.status_code == 204, r.text
    assert httpx.get(rotated).status_code == 404
