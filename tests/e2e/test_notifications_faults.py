"""Notifications under faults, end to end: a server SIGKILLed after handing a message to the
mail server and before recording it resends it after a restart with the same Message-ID (the
recipient sees it once); a mail server that never answers does not slow bookings down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_booking import later, make_slots
from tests.e2e.test_notifications import MAIL_ENV, people
from tests.mail_sink import MailSink
from tests.support import RedisServer, ServerProcess, free_port, timeout, wait_until


@pytest.fixture
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


def mail_server(redis: RedisServer, sink: MailSink, data_dir: Path, **env: str) -> ServerProcess:
    values = {**MAIL_ENV, "HEALTHMED_REDIS_URL": redis.url, "HEALTHMED_MAIL_URL": sink.url}
    values.update(env)
    return ServerProcess(port=free_port(), data_dir=data_dir, env=values).start()


def test_a_server_killed_after_the_send_resends_with_the_same_message_id(
    module_redis: RedisServer, sink: MailSink, tmp_path: Path, unique: Callable[[], int]
) -> None:
    """SIGKILL while the mail server holds the message unanswered; after the restart the
    lease runs out and the same message (same Message-ID) is sent again and marked sent."""
    server = mail_server(
        module_redis, sink, tmp_path / "server", HEALTHMED_REQUEST_TTL_SECONDS="7200"
    )  # lease: 4 s
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            p = people(http, unique)
            [slot] = make_slots(http, p["doc"], [(later(1), later(2))])
            sink.mode = "record-then-hang"
            r = http.post("/v1/appointments", headers=p["pat"], json={"slot_id": slot})
            assert r.status_code == 201, r.text
            first = sink.wait_for(2)  # both messages reached the server, neither was answered
            assert server.proc is not None
            server.proc.kill()  # SIGKILL: no chance to record anything
            server.proc.wait()
            server.proc = None
            sink.mode = "accept"
            server.start()
            again = sink.wait_for(4, seconds=20)
            time.sleep(timeout(1.5))
            for email in (p["doctor_email"], p["patient_email"]):
                copies = {r.message_id for r in sink.messages(email)}
                assert len(copies) == 1  # one notification as the recipient's client shows it
            assert {r.message_id for r in first} == {r.message_id for r in again}
            listed = http.get("/v1/me/notifications", headers=p["pat"]).json()["items"]
            assert [(i["kind"], i["status"]) for i in listed] == [("appointment.requested", "sent")]
    finally:
        server.stop()


def test_a_hanging_mail_server_never_slows_a_booking(
    module_redis: RedisServer, sink: MailSink, tmp_path: Path, unique: Callable[[], int]
) -> None:
    """With the SMTP server accepting connections and never answering, requesting and
    accepting answer at once (well inside the send timeout) and the messages wait, queued."""
    server = mail_server(
        module_redis, sink, tmp_path / "server", HEALTHMED_MAIL_LEASE_SECONDS="60"
    )  # a send waits up to 30 s for the server
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            p = people(http, unique)
            slots = make_slots(http, p["doc"], [(later(1), later(2)), (later(3), later(4))])
            sink.mode = "hang"
            for slot in slots:
                started = time.monotonic()
                r = http.post("/v1/appointments", headers=p["pat"], json={"slot_id": slot})
                assert r.status_code == 201, r.text
                r = http.post(f"/v1/appointments/{r.json()['id']}/accept", headers=p["doc"])
                assert r.status_code == 200, r.text
                assert time.monotonic() - started < timeout(5)  # not the 30 s send timeout
            listed = http.get("/v1/me/notifications", headers=p["pat"]).json()["items"]
            assert {i["status"] for i in listed} == {"queued"}
            # The drainer reaches the hanging server (it looks at most every 0.5 s) and stays
            # stuck there: the messages above stay queued meanwhile.
            wait_until(lambda: sink.attempts >= 1, 10, "the drainer to reach the mail server")
            listed = http.get("/v1/me/notifications", headers=p["pat"]).json()["items"]
            assert {i["status"] for i in listed} == {"queued"}  # held while the server hangs
    finally:
        server.stop()
