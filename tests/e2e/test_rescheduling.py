"""Doctor cancellation, rescheduling and time off end to end: the real server process on its
own redis-server, e-mails caught by an SMTP sink (aiosmtpd), events read over real websockets.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e._accounts import bearer, login_patient, register_patient
from tests.e2e.test_booking import later, make_slots, new_doctor, problem
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


# --- doctor cancellation ----------------------------------------------------------------------


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


# --- the doctor's time zone -------------------------------------------------------------------


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
