"""Chaos: a booking-and-decision storm through the real server while Redis is killed and
restarted empty, then the end state checked through the API.

Starts a private ``redis-server`` and a server (``python -m gateway.cli serve``) on free ports
and a private data directory. ``--patients`` clients book random slots of ``--doctors`` doctors
(each request with a fresh ``Idempotency-Key``; now and then one replays an earlier key) while
each doctor accepts or refuses its pending requests, for ``--seconds``. At ``--kill-at`` seconds
Redis gets ``kill -9``; ``--down`` seconds later an empty one starts on the same port.

Checks, through the API only, after the storm:

* every appointment whose accept answered 200 is still ``confirmed`` (``confirmed_lost``);
* no slot has two active (requested or confirmed) appointments (``double_active``);
* each doctor's public agenda shows a slot ``taken`` exactly when it has an active
  appointment (``agenda_mismatches``);
* every key replayed after the restart answers its first response, same status and body
  (``replays_right`` of ``replays``);
* no answer was a 5xx other than 503 (``errors_5xx``), and no request sent once
  ``/health/ready`` said 200 again was a 503 (``503_after_recovery``).

Usage: ``python loadtest/chaos_redis.py [--seconds 30] [--kill-at 10] [--down 5]``. Prints the
figures, last line ``key=value``; exits 1 on any loss.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _bench import Conn, forge_token, free_port, stop, wait_port, wait_ready
from bench_booking import create_slots, register_doctors

ROOT = Path(__file__).resolve().parent.parent
ACTIVE = {"requested", "confirmed"}


@dataclass
class Tally:
    bookings: Counter[int] = field(default_factory=Counter)
    decisions: Counter[int] = field(default_factory=Counter)
    during_outage_503: int = 0
    after_recovery_503: int = 0
    errors_5xx: int = 0
    confirmed: set[str] = field(default_factory=set)
    first: dict[str, tuple[str, str, int, bytes]] = field(default_factory=dict)
    """Idempotency-Key -> (patient token, slot, first status, first body)."""
    replays: int = 0
    replays_right: int = 0
    killed_at: float = float("inf")
    recovered_at: float = float("inf")

    def count(self, status: int, sent: float) -> None:
        if status == 503:
            if sent >= self.recovered_at:
                self.after_recovery_503 += 1
            elif sent >= self.killed_at:
                self.during_outage_503 += 1
        elif status >= 500:
            self.errors_5xx += 1


class Redis:
    """A private redis-server that can be killed and replaced on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        binary = shutil.which("redis-server") or sys.exit("redis-server is not installed")
        proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--maxclients", "20000", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port, proc)
        return proc

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        self.proc = self._start()


async def patient_worker(
    port: int, tokens: list[str], slots: list[str], t: Tally, end: float
) -> None:
    conn = Conn(port)
    try:
        while time.monotonic() < end:
            token = random.choice(tokens)
            if t.first and random.random() < 0.1:
                key = random.choice(list(t.first))
                token, slot, _, _ = t.first[key]
                replay = True
            else:
                key, slot, replay = uuid.uuid4().hex, random.choice(slots), False
            sent = time.monotonic()
            try:
                code, data = await conn.request(
                    "POST", "/v1/appointments",
                    {"Authorization": f"Bearer {token}", "Idempotency-Key": key},
                    {"slot_id": slot},
                )  # fmt: skip
            except (OSError, asyncio.IncompleteReadError):
                conn.close()
                continue
            t.bookings[code] += 1
            t.count(code, sent)
            if code in (201, 409, 422) and key not in t.first and not replay:
                t.first[key] = (token, slot, code, data)
    finally:
        conn.close()


async def doctor_worker(port: int, token: str, t: Tally, end: float) -> None:
    conn = Conn(port)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        while time.monotonic() < end:
            sent = time.monotonic()
            code, body = await conn.get_json("/v1/appointments?status=requested&limit=20", auth)
            t.count(code, sent)
            if code != 200:
                await asyncio.sleep(0.2)
                continue
            for appt in body["items"]:
                verb = random.choice(["accept", "refuse"])
                sent = time.monotonic()
                code, _data = await conn.request(
                    "POST", f"/v1/appointments/{appt['id']}/{verb}", auth
                )
                t.decisions[code] += 1
                t.count(code, sent)
                if verb == "accept" and code == 200:
                    t.confirmed.add(appt["id"])
            await asyncio.sleep(0.05)
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        conn.close()


async def chaos(
    redis: Redis, url: str, t: Tally, start: float, kill_at: float, down: float
) -> None:
    await asyncio.sleep(max(0.0, start + kill_at - time.monotonic()))
    redis.kill()
    t.killed_at = time.monotonic()
    await asyncio.sleep(down)
    redis.restart()
    conn = Conn(int(url.rsplit(":", 1)[1]))
    while True:
        try:
            code, _ = await conn.request("GET", "/health/ready")
        except (OSError, asyncio.IncompleteReadError):
            conn.close()
            code = 0
        if code == 200:
            t.recovered_at = time.monotonic()
            return
        await asyncio.sleep(0.05)


async def all_appointments(conn: Conn, token: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        code, body = await conn.get_json(
            f"/v1/appointments?limit=100{cursor}", {"Authorization": f"Bearer {token}"}
        )
        assert code == 200, (code, body)
        items += body["items"]
        if not body["next_cursor"]:
            return items
        cursor = f"&cursor={body['next_cursor']}"


async def check(port: int, doctors: list[tuple[str, str]], t: Tally) -> dict[str, int]:
    conn = Conn(port)
    found: dict[str, dict[str, Any]] = {}
    double = mismatches = 0
    for doctor_id, token in doctors:
        appts = await all_appointments(conn, token)
        found.update({a["id"]: a for a in appts})
        active = Counter(a["slot"]["id"] for a in appts if a["status"] in ACTIVE)
        double += sum(1 for n in active.values() if n > 1)
        code, agenda = await conn.get_json(
            f"/v1/doctors/{doctor_id}/slots", {"Authorization": f"Bearer {token}"}
        )
        assert code == 200, (code, agenda)
        for slot in agenda["slots"]:
            if (slot["status"] == "taken") != (slot["id"] in active):
                mismatches += 1
    lost = sum(1 for a in t.confirmed if found.get(a, {}).get("status") != "confirmed")
    booked = [k for k, v in t.first.items() if v[2] == 201]
    others = [k for k, v in t.first.items() if v[2] != 201]
    for key in booked + random.sample(others, min(len(others), 300)):
        token, slot, status, body = t.first[key]
        code, data = await conn.request(
            "POST", "/v1/appointments",
            {"Authorization": f"Bearer {token}", "Idempotency-Key": key}, {"slot_id": slot},
        )  # fmt: skip
        t.replays += 1
        t.replays_right += (code, data) == (status, body)
        if code >= 500:
            t.errors_5xx += code != 503
            t.after_recovery_503 += code == 503
    conn.close()
    return {"confirmed_lost": lost, "double_active": double, "agenda_mismatches": mismatches}


async def main(args: argparse.Namespace) -> int:
    redis = Redis()
    data_dir = Path(tempfile.mkdtemp(prefix="healthmed-chaos-"))
    port = free_port()
    env = {**os.environ, "HEALTHMED_DATA_DIR": str(data_dir), "HEALTHMED_HOST": "127.0.0.1",
           "HEALTHMED_PORT": str(port), "HEALTHMED_LOG_LEVEL": "WARNING",
           "HEALTHMED_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"}  # fmt: skip
    log = (data_dir / "server.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve"], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/health/ready", server)
        doctors = await register_doctors(port, args.doctors, random.randrange(10**6, 9 * 10**6))
        slots: list[str] = []
        for i, (_, token) in enumerate(doctors):
            slots += await create_slots(port, token, args.slots_per_doctor, 2 + i)
        secret = (data_dir / "secrets" / "jwt_secret").read_text().strip()
        patients = [forge_token(secret, f"P{uuid.uuid4().hex}", "patient") for _ in range(200)]
        t = Tally()
        start = time.monotonic()
        end = start + args.seconds
        await asyncio.gather(
            chaos(redis, url, t, start, args.kill_at, args.down),
            *(patient_worker(port, patients, slots, t, end) for _ in range(args.patients)),
            *(doctor_worker(port, token, t, end) for _, token in doctors),
        )
        await asyncio.sleep(2)  # let the sweeper and the Redis watcher settle
        state = await check(port, doctors, t)
        server_log = (data_dir / "server.log").read_text(errors="replace")
    finally:
        stop([server])
        redis.kill()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    figures = {
        "bookings": sum(t.bookings.values()),
        "booked_201": t.bookings[201],
        "decisions": sum(t.decisions.values()),
        "confirmed": len(t.confirmed),
        "503_during_outage": t.during_outage_503,
        "503_after_recovery": t.after_recovery_503,
        "errors_5xx": t.errors_5xx,
        "replays": t.replays,
        "replays_right": t.replays_right,
        **state,
        "recovery_s": round(t.recovered_at - t.killed_at, 2),
        "tracebacks_in_log": server_log.count("Traceback"),
    }
    print("booking answers:", dict(sorted(t.bookings.items())))
    print("decision answers:", dict(sorted(t.decisions.items())))
    print("load average:", Path("/proc/loadavg").read_text().split()[:3])
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    lost = (
        state["confirmed_lost"] + state["double_active"] + state["agenda_mismatches"]
        + t.errors_5xx + t.after_recovery_503 + (t.replays - t.replays_right)
    )  # fmt: skip
    return 1 if lost else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--kill-at", type=float, default=10)
    parser.add_argument("--down", type=float, default=5)
    parser.add_argument("--doctors", type=int, default=6)
    parser.add_argument("--slots-per-doctor", type=int, default=40)
    parser.add_argument("--patients", type=int, default=24)
    sys.exit(asyncio.run(main(parser.parse_args())))
