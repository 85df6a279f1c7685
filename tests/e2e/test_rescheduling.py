"""Doctor cancellation, rescheduling and time off end to end: the real server process on its
own redis-server, e-mails caught by an SMTP sink (aiosmtpd), events read over real websockets.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e._accounts import bearer, login_patient, register_patient
from tests.e2e.test_booking import forge, iso, later, make_slots, new_doctor, problem
from tests.mail_sink import MailSink, Received
from tests.support import RedisServer, ServerProcess, free_port, timeout


@pytest.fixture(scope="module")
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rs_server(
    module_redis: RedisServer, sink: MailSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        port=free_port(),
        data_dir=Path(tmp_path_factory.mktemp("resched")),
        env={
            "HEALTHMED_REDIS_URL": module_redis.url,
            "HEALTHMED_MAIL_URL": sink.url,
            "HEALTHMED_MAIL_POLL_SECONDS": "0.2",
            "HEALTHMED_ENV": "test",
        },
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def http(rs_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rs_server.url, timeout=30) as client:
        yield client


def people(http: httpx.Client, unique: Callable[[], int]) -> dict[str, Any]:
    """A fresh doctor and patient, logged in, with their e-mail addresses."""
    doctor_id, doc = new_doctor(http, unique)
    profile = register_patient(http, unique())
    pair = login_patient(http, profile)
    return {
        "doctor_id": doctor_id, "doc": doc,
        "doctor_email": http.get("/v1/me", headers=doc).json()["email"],
        "patient_id": profile["id"], "pat": bearer(pair), "patient_token": pair["access_token"],
        "patient_email": profile["email"],
    }  # fmt: skip


def wait_kind(sink: MailSink, email: str, kind: str, seconds: float = 10) -> Received:
    deadline = time.monotonic() + timeout(seconds)
    while time.monotonic() < deadline:
        found = [r for r in sink.messages(email) if r.kind == kind]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise TimeoutError(f"no {kind} message arrived for {email}")


class Listener:
    """A websocket client authenticated as one user, collecting every event frame."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, server: ServerProcess, token: str) -> Listener:
        ws = await connect(server.ws_url)
        await ws.send(json.dumps({"type": "auth", "token": token}))
        async with asyncio.timeout(timeout(5)):
            ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        return cls(ws)

    async def until(self, event: str, seconds: float = 5) -> dict[str, Any]:
        """The first frame of ``event`` (reading and keeping every frame until it comes)."""
        async with asyncio.timeout(timeout(seconds)):
            while True:
                for frame in self.frames:
                    if frame.get("event") == event:
                        return frame
                frame = json.loads(await self.ws.recv())
                if frame["type"] == "event":
                    self.frames.append(frame)


def post(http: httpx.Client, path: str, headers: dict[str, str], body: Any = None) -> Any:
    r = http.post(path, headers=headers, json=body if body is not None else {})
    assert r.status_code in (200, 201), r.text
    return r.json()


# --- doctor cancellation --------------------------------------------------------------------------


def test_the_doctor_cancels_with_a_justification_and_the_patient_is_told(
    rs_server: ServerProcess, http: httpx.Client, sink: MailSink, unique: Callable[[], int]
) -> None:
    """A doctor's cancel of a confirmed appointment: cancellation.by "doctor", the patient
    gets appointment.cancelled live and an e-mail (METHOD:CANCEL), the doctor gets no e-mail
    of it, the slot reopens; a justification out of bounds is 422; another doctor 404."""
    p = people(http, unique)
    (slot,) = make_slots(http, p["doc"], [(later(1), later(2))])
    appt = post(http, "/v1/appointments", p["pat"], {"slot_id": slot})["id"]
    post(http, f"/v1/appointments/{appt}/accept", p["doc"])
    for bad in ("too short", "x" * 1001):
        problem(
            http.post(f"/v1/appointments/{appt}/cancel", headers=p["doc"],
                      json={"justification": bad}),
            422,
        )  # fmt: skip
    _, other = new_doctor(http, unique)
    problem(
        http.post(f"/v1/appointments/{appt}/cancel", headers=other,
                  json={"justification": "I am not this appointment's doctor"}),
        404,
    )  # fmt: skip

    async def cancel_while_listening() -> dict[str, Any]:
        listener = await Listener.open(rs_server, p["patient_token"])
        try:
            body = {"justification": "Estarei em um congresso nesse dia."}
            r = await asyncio.to_thread(
                http.post, f"/v1/appointments/{appt}/cancel", headers=p["doc"], json=body
            )
            assert r.status_code == 200, r.text
            assert r.json()["cancellation"]["by"] == "doctor"
            return await listener.until("appointment.cancelled")
        finally:
            await listener.ws.close()

    frame = asyncio.run(cancel_while_listening())
    assert frame["topic"] == f"patient.{p['patient_id']}.appointments"
    assert frame["data"]["id"] == appt
    assert frame["data"]["cancellation"]["by"] == "doctor"
    mail = wait_kind(sink, p["patient_email"], "appointment.cancelled")
    cal = mail.invitation()
    assert cal is not None
    assert cal["METHOD"] == "CANCEL"
    time.sleep(timeout(1))
    assert [r.kind for r in sink.messages(p["doctor_email"])
            if r.kind == "appointment.cancelled"] == []  # fmt: skip
    agenda = http.get(f"/v1/doctors/{p['doctor_id']}/slots", headers=p["pat"]).json()
    assert [(s["id"], s["status"]) for s in agenda["slots"]] == [(slot, "open")]


# --- the doctor's time zone -----------------------------------------------------------------------


def test_the_doctors_timezone_defaults_to_sao_paulo_and_is_set_with_patch_me(
    http: httpx.Client, unique: Callable[[], int]
) -> None:
    """A new doctor's profile says America/Sao_Paulo; PATCH /v1/me sets another IANA name,
    seen in the public profile too; a name that is not IANA (or not a string) is 422
    invalid_timezone and changes nothing."""
    p = people(http, unique)
    assert http.get("/v1/me", headers=p["doc"]).json()["timezone"] == "America/Sao_Paulo"
    r = http.patch("/v1/me", headers=p["doc"], json={"timezone": "America/Manaus"})
    assert r.status_code == 200, r.text
    assert r.json()["timezone"] == "America/Manaus"
    public = http.get(f"/v1/doctors/{p['doctor_id']}", headers=p["pat"]).json()
    assert public["timezone"] == "America/Manaus"
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "x" * 300, 5):
        problem(http.patch("/v1/me", headers=p["doc"], json={"timezone": bad}), 422)
    assert http.get("/v1/me", headers=p["doc"]).json()["timezone"] == "America/Manaus"


# --- rescheduling ---------------------------------------------------------------------------------


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def agenda_of(http: httpx.Client, p: dict[str, Any]) -> dict[str, str]:
    """Slot id -> public status of the doctor's agenda, as the patient reads it."""
    agenda = http.get(
        f"/v1/doctors/{p['doctor_id']}/slots", headers=p["pat"],
        params={"from": iso(later(-1)), "to": iso(later(48))},
    ).json()  # fmt: skip
    return {s["id"]: s["status"] for s in agenda["slots"]}


def own_slots(http: httpx.Client, p: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Slot id -> (status, appointment id) of the doctor's own listing."""
    r = http.get("/v1/me/slots", headers=p["doc"],
                 params={"from": iso(later(-1)), "to": iso(later(48))})  # fmt: skip
    assert r.status_code == 200, r.text
    return {s["id"]: (s["status"], s.get("appointment_id")) for s in r.json()["items"]}


def test_a_requested_appointment_moves_at_once(
    rs_server: ServerProcess, http: httpx.Client, sink: MailSink, unique: Callable[[], int]
) -> None:
    """Rescheduling a request: 200 with the new slot and a new decision_deadline, the old slot
    open again at once, the new one taken; appointment.rescheduled reaches the patient and the
    doctor live, and both get the rescheduled e-mail."""
    p = people(http, unique)
    a, b = make_slots(http, p["doc"], [(later(1), later(2)), (later(5), later(6))])
    appt = post(http, "/v1/appointments", p["pat"], {"slot_id": a})

    async def move_while_listening() -> tuple[Any, dict[str, Any], dict[str, Any]]:
        doctor_token = p["doc"]["Authorization"].removeprefix("Bearer ")
        pat = await Listener.open(rs_server, p["patient_token"])
        doc = await Listener.open(rs_server, doctor_token)
        try:
            r = await asyncio.to_thread(
                http.post, f"/v1/appointments/{appt['id']}/reschedule", headers=p["pat"],
                json={"slot_id": b},
            )  # fmt: skip
            assert r.status_code == 200, r.text
            return (
                r.json(),
                await pat.until("appointment.rescheduled"),
                await doc.until("appointment.rescheduled"),
            )
        finally:
            await pat.ws.close()
            await doc.ws.close()

    moved, to_patient, to_doctor = asyncio.run(move_while_listening())
    assert moved["status"] == "requested"
    assert moved["slot"]["id"] == b
    assert moved["slot"]["start"] == iso(later(5))
    assert when(moved["decision_deadline"]) >= when(appt["decision_deadline"])
    assert "pending_move" not in moved
    assert to_patient["topic"] == f"patient.{p['patient_id']}.appointments"
    assert to_doctor["topic"] == f"doctor.{p['doctor_id']}.appointments"
    assert to_patient["data"]["slot"]["id"] == b
    assert agenda_of(http, p) == {a: "open", b: "taken"}
    assert own_slots(http, p) == {a: ("open", None), b: ("requested", appt["id"])}
    got = http.get(f"/v1/appointments/{appt['id']}", headers=p["pat"]).json()
    assert got["slot"]["id"] == b
    for email in (p["patient_email"], p["doctor_email"]):
        wait_kind(sink, email, "appointment.rescheduled")
    # the moved request is decided as usual, at its new slot
    accepted = post(http, f"/v1/appointments/{appt['id']}/accept", p["doc"])
    assert accepted["meeting"]["starts_at"] == iso(later(5))
    listed = http.get("/v1/appointments", headers=p["pat"]).json()["items"]
    assert [(i["id"], i["slot"]["id"]) for i in listed] == [(appt["id"], b)]


def test_a_confirmed_appointment_keeps_its_slot_until_the_doctor_accepts_the_move(
    rs_server: ServerProcess, http: httpx.Client, sink: MailSink, unique: Callable[[], int]
) -> None:
    """A confirmed appointment's reschedule: still confirmed at its slot with its meeting,
    plus pending_move {slot, decision_deadline}; both slots taken; a second move is 409
    invalid_transition; the doctor gets appointment.move_requested. The doctor's accept
    applies it: new slot and meeting times, the old slot open, appointment.rescheduled to
    both, and e-mails with METHOD:REQUEST, the same UID and a higher SEQUENCE."""
    p = people(http, unique)
    a, b, c = make_slots(http, p["doc"], [(later(1), later(2)), (later(5), later(6)),
                                          (later(8), later(9))])  # fmt: skip
    appt = post(http, "/v1/appointments", p["pat"], {"slot_id": a})["id"]
    confirmed = post(http, f"/v1/appointments/{appt}/accept", p["doc"])
    first_invite = wait_kind(sink, p["patient_email"], "appointment.confirmed").invitation()
    assert first_invite is not None

    async def ask_while_listening() -> tuple[Any, dict[str, Any]]:
        doctor_token = p["doc"]["Authorization"].removeprefix("Bearer ")
        doc = await Listener.open(rs_server, doctor_token)
        try:
            r = await asyncio.to_thread(
                http.post, f"/v1/appointments/{appt}/reschedule", headers=p["pat"],
                json={"slot_id": b},
            )  # fmt: skip
            assert r.status_code == 200, r.text
            return r.json(), await doc.until("appointment.move_requested")
        finally:
            await doc.ws.close()

    pending, frame = asyncio.run(ask_while_listening())
    assert pending["status"] == "confirmed"
    assert pending["slot"]["id"] == a
    assert pending["meeting"]["starts_at"] == confirmed["meeting"]["starts_at"]
    assert pending["pending_move"]["slot"] == {"id": b, "start": iso(later(5)),
                                               "end": iso(later(6))}  # fmt: skip
    assert "decision_deadline" in pending["pending_move"]
    assert frame["data"]["pending_move"]["slot"]["id"] == b
    assert agenda_of(http, p) == {a: "taken", b: "taken", c: "open"}
    assert own_slots(http, p) == {a: ("booked", appt), b: ("requested", appt), c: ("open", None)}
    problem(
        http.post(f"/v1/appointments/{appt}/reschedule", headers=p["pat"], json={"slot_id": c}),
        409, "invalid_transition",
    )  # fmt: skip
    r = http.get(f"/v1/appointments/{appt}/meeting", headers=p["pat"])
    assert r.json()["starts_at"] == iso(later(1))

    applied = post(http, f"/v1/appointments/{appt}/accept", p["doc"])
    assert applied["status"] == "confirmed"
    assert applied["slot"]["id"] == b
    assert applied["meeting"]["starts_at"] == iso(later(5))
    assert "pending_move" not in applied
    assert agenda_of(http, p) == {a: "open", b: "taken", c: "open"}
    assert own_slots(http, p) == {a: ("open", None), b: ("booked", appt), c: ("open", None)}
    for email in (p["patient_email"], p["doctor_email"]):
        cal = wait_kind(sink, email, "appointment.rescheduled").invitation()
        assert cal is not None
        assert cal["METHOD"] == "REQUEST"
        [event] = cal.walk("VEVENT")
        assert str(event["UID"]) == f"{appt}@healthmed"
        assert int(event["SEQUENCE"]) > 0
        assert event.decoded("DTSTART") == later(5)
    # the old slot is bookable by anyone again
    other = bearer(login_patient(http, register_patient(http, unique())))
    assert post(http, "/v1/appointments", other, {"slot_id": a})["slot"]["id"] == a


def test_the_doctor_refuses_a_move_and_the_appointment_stays_where_it_was(
    rs_server: ServerProcess, http: httpx.Client, unique: Callable[[], int]
) -> None:
    """Refusing a pending move: 200 confirmed at the old slot, no pending_move, the new slot
    open again; the patient gets appointment.move_refused; the patient may ask again."""
    p = people(http, unique)
    a, b = make_slots(http, p["doc"], [(later(1), later(2)), (later(5), later(6))])
    appt = post(http, "/v1/appointments", p["pat"], {"slot_id": a})["id"]
    post(http, f"/v1/appointments/{appt}/accept", p["doc"])
    post(http, f"/v1/appointments/{appt}/reschedule", p["pat"], {"slot_id": b})

    async def refuse_while_listening() -> tuple[Any, dict[str, Any]]:
        pat = await Listener.open(rs_server, p["patient_token"])
        try:
            r = await asyncio.to_thread(
                http.post, f"/v1/appointments/{appt}/refuse", headers=p["doc"], json={}
            )
            assert r.status_code == 200, r.text
            return r.json(), await pat.until("appointment.move_refused")
        finally:
            await pat.ws.close()

    kept, frame = asyncio.run(refuse_while_listening())
    assert kept["status"] == "confirmed"
    assert kept["slot"]["id"] == a
    assert "pending_move" not in kept
    assert frame["data"]["id"] == appt
    assert agenda_of(http, p) == {a: "taken", b: "open"}
    again = post(http, f"/v1/appointments/{appt}/reschedule", p["pat"], {"slot_id": b})
    assert again["pending_move"]["slot"]["id"] == b


def test_bad_reschedules_are_refused_with_clear_codes(
    rs_server: ServerProcess, http: httpx.Client, unique: Callable[[], int]
) -> None:
    """Another doctor's slot: 422; a slot that started: 422; an unknown slot: 404; someone
    else's appointment: 404; a doctor asking: 403; a taken slot: 409 slot_unavailable; a
    cancelled appointment: 409 invalid_transition; a body with unknown fields: 422. Nothing
    changes on any of them."""
    p = people(http, unique)
    a, b = make_slots(http, p["doc"], [(later(1), later(2)), (later(5), later(6))])
    start_soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    (past,) = make_slots(http, p["doc"], [(start_soon, start_soon + timedelta(minutes=50))])
    _, other_doc = new_doctor(http, unique)
    (foreign,) = make_slots(http, other_doc, [(later(3), later(4))])
    appt = post(http, "/v1/appointments", p["pat"], {"slot_id": a})["id"]
    taker = bearer(login_patient(http, register_patient(http, unique())))
    post(http, "/v1/appointments", taker, {"slot_id": b})
    path = f"/v1/appointments/{appt}/reschedule"
    problem(http.post(path, headers=p["pat"], json={"slot_id": foreign}), 422)
    time.sleep(max(0.0, (start_soon - datetime.now(UTC)).total_seconds()) + 0.5)
    problem(http.post(path, headers=p["pat"], json={"slot_id": past}), 422)
    problem(http.post(path, headers=p["pat"], json={"slot_id": f"{p['doctor_id']}.{'0' * 26}"}),
            404)  # fmt: skip
    problem(http.post(path, headers=taker, json={"slot_id": b}), 404)
    problem(http.post(path, headers=p["doc"], json={"slot_id": b}), 403)
    problem(http.post(path, headers=p["pat"], json={"slot_id": b}), 409, "slot_unavailable")
    problem(http.post(path, headers=p["pat"], json={"slot_id": b, "x": 1}), 422)
    problem(http.post(path, headers=p["pat"], json={}), 422)
    got = http.get(f"/v1/appointments/{appt}", headers=p["pat"]).json()
    assert got["slot"]["id"] == a
    assert got["status"] == "requested"
    post(http, f"/v1/appointments/{appt}/cancel", p["pat"],
         {"justification": "I changed my mind entirely"})  # fmt: skip
    (free,) = make_slots(http, p["doc"], [(later(10), later(11))])
    problem(http.post(path, headers=p["pat"], json={"slot_id": free}), 409, "invalid_transition")
    assert agenda_of(http, p)[free] == "open"


def test_a_pending_move_lapses_at_its_deadline(
    start_server: Callable[..., ServerProcess], unique: Callable[[], int]
) -> None:
    """With a 2 s decision TTL, an undecided move lapses: the appointment stays confirmed at
    its slot without pending_move, the new slot opens, the patient gets
    appointment.move_lapsed; a doctor's accept after that is 409 invalid_transition."""
    redis_server = RedisServer.start()
    try:
        server = start_server(
            HEALTHMED_REDIS_URL=redis_server.url, HEALTHMED_REQUEST_TTL_SECONDS="2",
            HEALTHMED_ENV="test",
        )  # fmt: skip
        with httpx.Client(base_url=server.url, timeout=30) as http:
            p = people(http, unique)
            a, b = make_slots(http, p["doc"], [(later(1), later(2)), (later(5), later(6))])
            appt = post(http, "/v1/appointments", p["pat"], {"slot_id": a})["id"]
            post(http, f"/v1/appointments/{appt}/accept", p["doc"])

            async def lapse_while_listening() -> dict[str, Any]:
                pat = await Listener.open(server, p["patient_token"])
                try:
                    await asyncio.to_thread(
                        post, http, f"/v1/appointments/{appt}/reschedule", p["pat"],
                        {"slot_id": b},
                    )  # fmt: skip
                    return await pat.until("appointment.move_lapsed", seconds=15)
                finally:
                    await pat.ws.close()

            frame = asyncio.run(lapse_while_listening())
            assert frame["data"]["id"] == appt
            got = http.get(f"/v1/appointments/{appt}", headers=p["pat"]).json()
            assert got["status"] == "confirmed"
            assert got["slot"]["id"] == a
            assert "pending_move" not in got
            assert agenda_of(http, p) == {a: "taken", b: "open"}
            problem(http.post(f"/v1/appointments/{appt}/accept", headers=p["doc"]), 409,
                    "invalid_transition")  # fmt: skip
    finally:
        redis_server.stop()


def test_a_flushed_redis_keeps_a_pending_move(
    rs_server: ServerProcess,
    http: httpx.Client,
    module_redis: RedisServer,
    unique: Callable[[], int],
) -> None:
    """FLUSHALL with a move pending: the agenda is rebuilt from the store with both slots
    taken, the move is still pending, and the doctor's accept still applies it."""
    p = people(http, unique)
    a, b = make_slots(http, p["doc"], [(later(1), later(2)), (later(5), later(6))])
    appt = post(http, "/v1/appointments", p["pat"], {"slot_id": a})["id"]
    post(http, f"/v1/appointments/{appt}/accept", p["doc"])
    post(http, f"/v1/appointments/{appt}/reschedule", p["pat"], {"slot_id": b})
    client = redis.Redis.from_url(module_redis.url)
    client.flushall()
    client.close()
    assert agenda_of(http, p) == {a: "taken", b: "taken"}
    assert own_slots(http, p) == {a: ("booked", appt), b: ("requested", appt)}
    got = http.get(f"/v1/appointments/{appt}", headers=p["pat"]).json()
    assert got["pending_move"]["slot"]["id"] == b
    outsider = forge(rs_server, "P" + uuid.uuid4().hex, "patient")
    problem(http.post("/v1/appointments", headers=outsider, json={"slot_id": b}), 409,
            "slot_unavailable")  # fmt: skip
    applied = post(http, f"/v1/appointments/{appt}/accept", p["doc"])
    assert applied["slot"]["id"] == b
    assert agenda_of(http, p) == {a: "open", b: "taken"}


# --- races through the real server ----------------------------------------------------------------


def race(server: ServerProcess, calls: list[tuple[str, dict[str, str], Any]]) -> list[Any]:
    """POST every (path, headers, body) at once; the responses in order."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=len(calls))
        async with httpx.AsyncClient(
            base_url=server.url, timeout=timeout(60), limits=limits
        ) as client:
            gate = asyncio.Event()

            async def one(path: str, headers: dict[str, str], body: Any) -> httpx.Response:
                await gate.wait()
                return await client.post(path, headers=headers, json=body)

            tasks = [asyncio.create_task(one(*c)) for c in calls]
            await asyncio.sleep(0.2)
            gate.set()
            return await asyncio.gather(*tasks)

    return asyncio.run(run())


@pytest.mark.parametrize("state", ["requested", "confirmed"])
def test_a_hundred_patients_race_a_reschedule_for_its_target_slot(
    rs_server: ServerProcess, http: httpx.Client, unique: Callable[[], int], state: str
) -> None:
    """100 patients book slot B while a patient reschedules into B: exactly one of them (or
    the mover) wins, never two; no 5xx; the agenda and the appointments agree."""
    p = people(http, unique)
    a, b = make_slots(http, p["doc"], [(later(1), later(2)), (later(5), later(6))])
    appt = post(http, "/v1/appointments", p["pat"], {"slot_id": a})["id"]
    if state == "confirmed":
        post(http, f"/v1/appointments/{appt}/accept", p["doc"])
    crowd = [forge(rs_server, "P" + uuid.uuid4().hex, "patient") for _ in range(100)]
    calls: list[tuple[str, dict[str, str], Any]] = [
        ("/v1/appointments", h, {"slot_id": b}) for h in crowd
    ]
    calls.insert(50, (f"/v1/appointments/{appt}/reschedule", p["pat"], {"slot_id": b}))
    responses = race(rs_server, calls)
    assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
    mover = responses[50]
    booked = [r for i, r in enumerate(responses) if i != 50 and r.status_code == 201]
    assert mover.status_code in (200, 409), mover.text
    winners = len(booked) + (mover.status_code == 200)
    assert winners == 1, [r.status_code for r in responses]
    losers = [r for r in responses if r.status_code == 409]
    assert all(r.json()["code"] == "slot_unavailable" for r in losers)
    got = http.get(f"/v1/appointments/{appt}", headers=p["pat"]).json()
    slots = own_slots(http, p)
    if mover.status_code == 200:
        if state == "requested":
            assert got["slot"]["id"] == b
            assert slots == {a: ("open", None), b: ("requested", appt)}
        else:
            assert got["pending_move"]["slot"]["id"] == b
            assert slots == {a: ("booked", appt), b: ("requested", appt)}
    else:
        assert got["slot"]["id"] == a
        assert "pending_move" not in got
        assert slots[a] == ("requested" if state == "requested" else "booked", appt)
        assert slots[b] == ("requested", booked[0].json()["id"])


def test_a_reschedule_racing_the_doctors_accept_leaves_one_consistent_booking(
    rs_server: ServerProcess, http: httpx.Client, unique: Callable[[], int]
) -> None:
    """Twenty times: a request's reschedule and the doctor's accept of it at once. Whatever
    the order, the appointment ends confirmed or requested at exactly one slot (plus at most a
    pending move), every other slot is open, and the store (a flush later) says the same."""
    p = people(http, unique)
    for _ in range(20):
        a, b = make_slots(http, p["doc"], [(later(1), later(2)), (later(5), later(6))])
        appt = post(http, "/v1/appointments", p["pat"], {"slot_id": a})["id"]
        move, accept = race(rs_server, [
            (f"/v1/appointments/{appt}/reschedule", p["pat"], {"slot_id": b}),
            (f"/v1/appointments/{appt}/accept", p["doc"], None),
        ])  # fmt: skip
        assert move.status_code in (200, 409), move.text
        assert accept.status_code in (200, 409), accept.text
        assert 200 in (move.status_code, accept.status_code)
        got = http.get(f"/v1/appointments/{appt}", headers=p["pat"]).json()
        held = {got["slot"]["id"]}
        pending = got.get("pending_move")
        if pending:
            held.add(pending["slot"]["id"])
        status = "booked" if got["status"] == "confirmed" else "requested"
        expected = {s: ("open", None) for s in (a, b)}
        expected[got["slot"]["id"]] = (status, appt)
        if pending:
            expected[pending["slot"]["id"]] = ("requested", appt)
        assert {s: v for s, v in own_slots(http, p).items() if s in (a, b)} == expected
        if accept.status_code == 200 and move.status_code == 200:
            # accepted first then moved (a pending move), or moved first then accepted there
            assert got["status"] == "confirmed"
        # clean up so the next round's slots are the only active ones
        post(http, f"/v1/appointments/{appt}/cancel", p["pat"],
             {"justification": "round over, thank you"})  # fmt: skip
        assert {s: v for s, v in own_slots(http, p).items() if s in (a, b)} == {
            a: ("open", None),
            b: ("open", None),
        }
        for s in (a, b):
            assert http.delete(f"/v1/me/slots/{s}", headers=p["doc"]).status_code == 204


# --- time off -------------------------------------------------------------------------------------


def test_time_off_clears_its_range_and_later_creations_skip_it(
    rs_server: ServerProcess, http: httpx.Client, sink: MailSink, unique: Callable[[], int]
) -> None:
    """Time off over slots: a confirmed appointment inside is 409 confirmed_in_range (listing
    it) and nothing changes; with cancel_confirmed and a justification, open slots inside are
    removed, the request refused, the confirmed one cancelled by the doctor (the patient is
    told); slots outside stay. Later explicit slots and rules skip the range; the range is
    listed and, once deleted (204), creations reach it again, the removed slots not recreated."""
    p = people(http, unique)
    second = register_patient(http, unique())
    pat2 = bearer(login_patient(http, second))
    before, inside_open, inside_req, inside_conf, after = make_slots(http, p["doc"], [
        (later(0), later(1)), (later(3), later(4)), (later(5), later(6)),
        (later(7), later(8)), (later(12), later(13)),
    ])  # fmt: skip
    req = post(http, "/v1/appointments", pat2, {"slot_id": inside_req})["id"]
    conf = post(http, "/v1/appointments", p["pat"], {"slot_id": inside_conf})["id"]
    post(http, f"/v1/appointments/{conf}/accept", p["doc"])
    body = {"from": iso(later(2)), "to": iso(later(10)), "reason": "congresso"}
    r = http.post("/v1/me/time-off", headers=p["doc"], json=body)
    problem(r, 409, "confirmed_in_range")
    assert r.json()["appointments"] == [conf]
    assert http.get("/v1/me/time-off", headers=p["doc"]).json()["items"] == []
    assert len(own_slots(http, p)) == 5
    for extra in ({"justification": "short"}, {}):
        r = http.post("/v1/me/time-off", headers=p["doc"],
                      json={**body, "cancel_confirmed": True, **extra})  # fmt: skip
        problem(r, 422)
    r = http.post("/v1/me/time-off", headers=p["doc"], json={
        **body, "cancel_confirmed": True, "justification": "Estarei num congresso médico.",
    })  # fmt: skip
    assert r.status_code == 201, r.text
    off = r.json()
    assert off["from"] == iso(later(2))
    assert off["to"] == iso(later(10))
    assert off["reason"] == "congresso"
    # every slot inside goes: the open one, and those the refusal and the cancellation freed
    assert sorted(off["removed_slots"]) == sorted([inside_open, inside_req, inside_conf])
    assert off["refused_requests"] == [req]
    assert off["cancelled_appointments"] == [conf]
    assert own_slots(http, p) == {before: ("open", None), after: ("open", None)}
    cancelled = http.get(f"/v1/appointments/{conf}", headers=p["pat"]).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancellation"]["by"] == "doctor"
    assert http.get(f"/v1/appointments/{req}", headers=pat2).json()["status"] == "refused"
    wait_kind(sink, p["patient_email"], "appointment.cancelled")
    assert http.get("/v1/me/time-off", headers=p["doc"]).json()["items"] == [off]

    # later creations skip the range: explicit slots inside are left out, a rule too
    r = http.post("/v1/me/slots", headers=p["doc"], json={"slots": [
        {"start": iso(later(9)), "end": iso(later(9, 50))},
        {"start": iso(later(14)), "end": iso(later(14, 50))},
    ]})  # fmt: skip
    assert r.status_code == 201, r.text
    assert [s["start"] for s in r.json()["items"]] == [iso(later(14))]
    day = later(2).date().isoformat()
    rule = {
        "from": day,
        "to": day,
        "weekdays": [1, 2, 3, 4, 5, 6, 7],
        "start_time": "00:00",
        "end_time": "23:59",
        "timezone": "UTC",
        "duration_minutes": 60,
        "gap_minutes": 0,
    }
    r = http.post("/v1/me/slots", headers=p["doc"], json={"rule": rule})
    if r.status_code == 201:
        for s in r.json()["items"]:
            assert not (iso(later(2)) <= s["start"] < iso(later(10))), s
    else:
        problem(r, 409)  # the day's other hours overlap the existing slots
    assert http.delete(f"/v1/me/time-off/{off['id']}", headers=p["doc"]).status_code == 204
    assert http.get("/v1/me/time-off", headers=p["doc"]).json()["items"] == []
    assert inside_open not in own_slots(http, p)
    (again,) = make_slots(http, p["doc"], [(later(9), later(9, 50))])
    assert again in own_slots(http, p)
    problem(http.delete(f"/v1/me/time-off/{off['id']}", headers=p["doc"]), 404)


def test_bad_time_off_is_422_and_others_time_off_is_404(
    http: httpx.Client, unique: Callable[[], int]
) -> None:
    """Inverted or empty ranges, ranges over 90 days, bad instants, unknown fields: 422;
    a patient: 403; another doctor's time off: 404."""
    p = people(http, unique)
    bad = [
        {"from": iso(later(5)), "to": iso(later(2))},
        {"from": iso(later(5)), "to": iso(later(5))},
        {"from": iso(later(0)), "to": iso(later(days=90, minutes=1))},
        {"from": "tomorrow", "to": iso(later(2))},
        {"from": iso(later(1)), "to": iso(later(2)), "colour": "blue"},
        {"from": iso(later(1)), "to": iso(later(2)), "reason": "x" * 1001},
        {"from": iso(later(1)), "to": iso(later(2)), "cancel_confirmed": True,
         "justification": "x" * 1001},
    ]  # fmt: skip
    for body in bad:
        problem(http.post("/v1/me/time-off", headers=p["doc"], json=body), 422)
    ok = {"from": iso(later(0)), "to": iso(later(days=90))}
    r = http.post("/v1/me/time-off", headers=p["doc"], json=ok)
    assert r.status_code == 201, r.text
    problem(http.post("/v1/me/time-off", headers=p["pat"], json=ok), 403)
    problem(http.get("/v1/me/time-off", headers=p["pat"]), 403)
    _, other = new_doctor(http, unique)
    problem(http.delete(f"/v1/me/time-off/{r.json()['id']}", headers=other), 404)
    assert len(http.get("/v1/me/time-off", headers=p["doc"]).json()["items"]) == 1


# --- holidays and the agenda's time zone ----------------------------------------------------------


def test_skip_holidays_leaves_out_christmas_and_the_doctors_state_holidays(
    http: httpx.Client, unique: Callable[[], int]
) -> None:
    """A daily rule over 2027-07-08..10 and 2027-12-24..26 for a SP doctor with skip_holidays:
    no slot on 9 July (SP state holiday) nor on Christmas; a rule without it has them. The
    agenda answers carry the doctor's time zone, used for a rule that names none."""
    p = people(http, unique)
    http.patch("/v1/me", headers=p["doc"], json={"timezone": "America/Sao_Paulo"})

    def rule_days(first: str, last: str, **extra: Any) -> list[str]:
        rule = {"from": first, "to": last, "weekdays": [1, 2, 3, 4, 5, 6, 7],
                "start_time": "09:00", "end_time": "10:00", **extra}  # fmt: skip
        r = http.post("/v1/me/slots", headers=p["doc"], json={"rule": rule})
        assert r.status_code == 201, r.text
        return [s["start"][:10] for s in r.json()["items"]]

    assert rule_days("2027-07-08", "2027-07-10", skip_holidays=True) == [
        "2027-07-08", "2027-07-10"]  # fmt: skip
    assert rule_days("2027-12-24", "2027-12-26", skip_holidays=True) == [
        "2027-12-24", "2027-12-26"]  # fmt: skip
    assert rule_days("2027-07-09", "2027-07-09", timezone="America/Sao_Paulo") == ["2027-07-09"]
    r = http.get(f"/v1/doctors/{p['doctor_id']}/slots", headers=p["pat"],
                 params={"from": "2027-07-08T00:00:00Z", "to": "2027-07-11T00:00:00Z"})  # fmt: skip
    assert r.json()["timezone"] == "America/Sao_Paulo"
    assert [s["start"] for s in r.json()["slots"]] == [
        "2027-07-08T12:00:00Z", "2027-07-09T12:00:00Z", "2027-07-10T12:00:00Z"]  # fmt: skip
    july = {"from": "2027-07-08T00:00:00Z", "to": "2027-07-11T00:00:00Z"}
    own = http.get("/v1/me/slots", headers=p["doc"], params=july)
    assert own.json()["timezone"] == "America/Sao_Paulo"
