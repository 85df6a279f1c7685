"""The outbox: how fast it drains, and what a slow mail server costs a booking.

1. ``drain``: ``--messages`` confirmations (text, HTML and an iCalendar invitation each) are
   queued in a fresh SQLite store, then one outbox drains them (claim, render, send, mark),
   through the ``file`` transport (``.eml`` files in a temporary folder) and the ``smtp``
   transport (aiosmtplib, one session a message) to an aiosmtpd ``Sink`` server running in
   its own process. Figure: messages per second, from the first claim to the last mark.
2. ``latency``: a real server process (``python -m gateway.cli serve``, private redis-server)
   whose ``HEALTHMED_MAIL_URL`` is an SMTP sink in this process; ``--pairs`` sequential
   request + accept pairs (each queues four e-mails) while the sink accepts, then while it
   hangs (takes the connection and never answers). Figure: request and accept p50/p99 in
   both phases: a state change must not wait on the mail server.

Usage: ``python loadtest/bench_outbox.py [--messages 1000] [--pairs 60]``. Last line:
``key=value`` pairs (``file_per_s``, ``smtp_per_s``, ``accept_p99_ms``,
``accept_p99_hanging_ms``, ``loadavg``...).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _bench import PASSWORD, Conn, forge_token, iso, pct, running_stack, wait_port

from engine.config import Settings
from engine.notifications import (
    Contact,
    FileTransport,
    Messages,
    Outbox,
    SmtpTransport,
    Transport,
    parse_mail_url,
)
from engine.store import SQLiteStore
from engine.timeutil import new_id, now_ms
from tests.mail_sink import MailSink
from tests.support import free_port


class Contacts:
    def __init__(self, count: int) -> None:
        self.known = {
            f"U{i}": Contact(name=f"Paciente {i}", email=f"u{i}@bench.test") for i in range(count)
        }
        self.known["DOC"] = Contact(name="Dra. Bench", email="doc@bench.test")

    async def contact(self, user_id: str) -> Contact | None:
        return self.known.get(user_id)


@contextlib.contextmanager
def smtp_sink_process() -> Iterator[str]:
    """aiosmtpd's discarding ``Sink`` handler in its own process; its smtp:// URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink",
         "-l", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        yield f"smtp://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


async def drain_rate(transport: Transport, count: int, folder: Path) -> float:
    """Messages per second for one outbox draining ``count`` queued confirmations."""
    store = await SQLiteStore.open(folder / f"outbox-{uuid.uuid4().hex}.sqlite3")
    settings = Settings(data_dir=folder, mail_lease_seconds=60)
    outbox = Outbox(settings, store, Messages(settings), Contacts(count), transport)
    start = now_ms() + 86_400_000
    ops: list[Any] = []
    for i in range(count):
        appointment_id = new_id()
        context = {
            "appointment_id": appointment_id, "doctor_id": "DOC", "patient_id": f"U{i}",
            "role": "patient", "start_ms": start, "end_ms": start + 3_000_000,
            "deadline_ms": start - 900_000, "sequence": 0,
            "meeting_url": f"https://meet.healthmed.local/hm-{appointment_id}?jwt=x",
        }  # fmt: skip
        ops += outbox.put_ops(
            "appointment.confirmed", f"U{i}", context, key=appointment_id, at=now_ms()
        )
        if len(ops) == 50:
            await store.transact(ops)
            ops = []
    if ops:
        await store.transact(ops)
    began = time.perf_counter()
    while await outbox.drain_once():
        pass
    elapsed = time.perf_counter() - began
    await store.close()
    if outbox.sent != count:
        raise SystemExit(f"drained {outbox.sent} of {count} (failed {outbox.failed})")
    return count / elapsed


async def booking_pairs(port: int, secret: str, pairs: int, sink: MailSink) -> dict[str, Any]:
    """Request/accept latencies (ms) for ``pairs`` appointments, sink accepting then hanging."""
    conn = Conn(port)
    n = random.randrange(10**6, 9 * 10**6)
    status, _ = await conn.post_json("/v1/doctors", {
        "name": "Dra. Bench", "crm": f"{n:08d}", "uf": "SP", "email": f"bench{n}@bench.test",
        "password": PASSWORD, "specialty": "cardiologia", "price_cents": 25_000,
        "location": {"lat": -23.55, "lon": -46.63},
    })  # fmt: skip
    assert status == 201
    status, login = await conn.post_json(
        "/v1/auth/doctors/login", {"crm": f"{n:08d}", "uf": "SP", "password": PASSWORD}
    )
    assert status == 200, login
    doctor = {"Authorization": f"Bearer {login['access_token']}"}
    base = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=3)
    spans = [(base + timedelta(hours=i), base + timedelta(hours=i, minutes=30))
             for i in range(2 * pairs)]  # fmt: skip
    status, body = await conn.post_json(
        "/v1/me/slots", {"slots": [{"start": iso(s), "end": iso(e)} for s, e in spans]}, doctor
    )
    assert status == 201, body
    slots = [item["id"] for item in body["items"]]
    results: dict[str, Any] = {}
    for phase, chunk in (("accepting", slots[:pairs]), ("hanging", slots[pairs:])):
        sink.mode = "accept" if phase == "accepting" else "hang"
        requested: list[float] = []
        accepted: list[float] = []
        for slot in chunk:
            patient = {"Authorization": "Bearer " + forge_token(secret, f"P{uuid.uuid4().hex}",
                                                                "patient")}  # fmt: skip
            t0 = time.perf_counter()
            status, appt = await conn.post_json("/v1/appointments", {"slot_id": slot}, patient)
            t1 = time.perf_counter()
            assert status == 201, appt
            status, done = await conn.post_json(f"/v1/appointments/{appt['id']}/accept", {}, doctor)
            t2 = time.perf_counter()
            assert status == 200, done
            requested.append((t1 - t0) * 1000)
            accepted.append((t2 - t1) * 1000)
        results[phase] = {
            "request_p50": pct(requested, 50), "request_p99": pct(requested, 99),
            "accept_p50": pct(accepted, 50), "accept_p99": pct(accepted, 99),
        }  # fmt: skip
        print(f"{phase:10} request p50 {results[phase]['request_p50']:.2f} ms "
              f"p99 {results[phase]['request_p99']:.2f} ms | accept p50 "
              f"{results[phase]['accept_p50']:.2f} ms p99 {results[phase]['accept_p99']:.2f} ms "
              f"| sink sessions so far {sink.attempts}")  # fmt: skip
    conn.close()
    return results


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="healthmed-outbox-bench-"))
    try:
        file_rate = await drain_rate(FileTransport(folder / "mail"), args.messages, folder)
        print(f"drain file: {file_rate:8.0f} messages/s ({args.messages} messages)")
        with smtp_sink_process() as url:
            smtp = SmtpTransport(parse_mail_url(url), timeout=30)
            smtp_rate = await drain_rate(smtp, args.messages, folder)
        print(f"drain smtp: {smtp_rate:8.0f} messages/s (aiosmtpd Sink in its own process)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sink = MailSink().start()
    try:
        env = {"HEALTHMED_ENV": "test", "HEALTHMED_MAIL_URL": sink.url,
               "HEALTHMED_MAIL_LEASE_SECONDS": "60"}  # fmt: skip
        with running_stack("server", env) as stack:
            latency = await booking_pairs(stack.port, stack.jwt_secret(), args.pairs, sink)
    finally:
        sink.stop()
    accepting, hanging = latency["accepting"], latency["hanging"]
    result = {
        "messages": args.messages,
        "file_per_s": round(file_rate),
        "smtp_per_s": round(smtp_rate),
        "pairs": args.pairs,
        "request_p50_ms": round(accepting["request_p50"], 2),
        "request_p99_ms": round(accepting["request_p99"], 2),
        "accept_p50_ms": round(accepting["accept_p50"], 2),
        "accept_p99_ms": round(accepting["accept_p99"], 2),
        "request_p99_hanging_ms": round(hanging["request_p99"], 2),
        "accept_p99_hanging_ms": round(hanging["accept_p99"], 2),
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
    }
    print(" ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=60)
    asyncio.run(main(parser.parse_args()))
