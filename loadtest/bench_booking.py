"""Booking throughput of a real server process, read against Redis' own limit and the server's
cheapest endpoint, all measured in the same run on the same machine.

Starts a private ``redis-server`` and a server (``python -m gateway.cli serve``: uvicorn,
uvloop, httptools, one worker) on a private data directory, then:

1. ``live``: ``GET /health/live`` from ``--connections`` keep-alive clients for ``--seconds``;
2. ``evalsha``: the reservation script (``reserve.lua``) called with EVALSHA straight on the
   same redis-server through a pipelined client (``--connections`` tasks, pipelines of 64),
   on an already taken slot (the path most racers take): Redis' own limit for the script;
3. ``hot``: ``--connections`` clients race for ``--slots`` slots of one doctor,
   ``POST /v1/appointments`` with a random slot and a random patient each time;
4. ``many``: the same against ``--doctors`` doctors with ``--slots-per-doctor`` slots each
   (more winners, so more store writes).

Checks: every slot has at most one 201 (``double_bookings``), and the agenda of every doctor
shows exactly the slots that were won as taken. Patients use access tokens signed with the
server's generated secret (same claims as a login), doctors register and log in for real.

The HTTP client is a minimal keep-alive HTTP/1.1 client on raw asyncio streams (uvloop): the
client shares the machine with the server, so a heavy client would eat the server's CPU.

Usage: ``python loadtest/bench_booking.py [--connections 64] [--seconds 8]``. Last line:
``key=value`` pairs (``bookings_per_s``, ``p99_ms``, ``ratio_vs_evalsha``, ``ratio_vs_live``,
``double_bookings``, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import uvloop
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import keys  # noqa: E402
from engine.booking._scripts import source  # noqa: E402

PASSWORD = "bench password 123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("process exited during start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not ready")


@contextlib.contextmanager
def running_stack() -> Iterator[tuple[int, int, Path]]:
    """(server port, redis port, data dir) of a fresh redis-server + server; stopped after."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    data_dir = Path(tempfile.mkdtemp(prefix="healthmed-bench-booking-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_port = free_port()
        procs.append(
            subprocess.Popen(
                [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--maxclients", "20000", "--loglevel", "warning"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        wait_port(redis_port, procs[-1])
        port = free_port()
        env = {
            **os.environ,
            "HEALTHMED_DATA_DIR": str(data_dir),
            "HEALTHMED_HOST": "127.0.0.1",
            "HEALTHMED_PORT": str(port),
            "HEALTHMED_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "HEALTHMED_LOG_LEVEL": "WARNING",
            "HEALTHMED_ENV": "test",
        }
        log = (data_dir / "server.log").open("ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        wait_port(port, procs[-1])
        yield port, redis_port, data_dir
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


# --- a minimal keep-alive HTTP/1.1 client -------------------------------------------------------
class Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        payload = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(payload)}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def forge(secret: str, sub: str, role: str) -> str:
    now = int(time.time())
    claims = {
        "iss": "healthmed", "aud": "healthmed-api", "sub": sub, "role": role,
        "iat": now, "exp": now + 3600, "jti": uuid.uuid4().hex,
    }  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")


# --- setup --------------------------------------------------------------------------------------
async def register_doctors(port: int, count: int, prefix: int) -> list[tuple[str, str]]:
    """(doctor id, access token) for ``count`` freshly registered doctors."""

    async def one(i: int) -> tuple[str, str]:
        conn = Conn(port)
        n = prefix + i
        status, body = await conn.request("POST", "/v1/doctors", body={
            "name": f"Dr Bench {n}", "crm": f"{n % 10**8:08d}", "uf": "SP",
            "email": f"bench{n}@example.com", "password": PASSWORD, "specialty": "cardiologia",
            "price_cents": 25_000, "location": {"lat": -23.55, "lon": -46.63},
        })  # fmt: skip
        assert status == 201, body
        doctor_id = json.loads(body)["id"]
        status, body = await conn.request(
            "POST", "/v1/auth/doctors/login",
            body={"crm": f"{n % 10**8:08d}", "uf": "SP", "password": PASSWORD},
        )  # fmt: skip
        assert status == 200, body
        conn.close()
        return doctor_id, json.loads(body)["access_token"]

    gate = asyncio.Semaphore(8)

    async def gated(i: int) -> tuple[str, str]:
        async with gate:
            return await one(i)

    return list(await asyncio.gather(*(gated(i) for i in range(count))))


async def create_slots(port: int, token: str, count: int, day_offset: int) -> list[str]:
    conn = Conn(port)
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=day_offset)
    ids: list[str] = []
    for chunk in range(0, count, 500):
        starts = [base + timedelta(hours=i) for i in range(chunk, min(count, chunk + 500))]
        spans = [{"start": iso(s), "end": iso(s + timedelta(minutes=50))} for s in starts]
        status, body = await conn.request(
            "POST", "/v1/me/slots", {"Authorization": f"Bearer {token}"}, {"slots": spans}
        )
        assert status == 201, body
        ids += [item["id"] for item in json.loads(body)["items"]]
    conn.close()
    return ids


# --- phases -------------------------------------------------------------------------------------
async def live_phase(port: int, connections: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client() -> None:
        conn = Conn(port)
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status, _ = await conn.request("GET", "/health/live")
            latencies.append(time.perf_counter() - t)
            assert status == 200
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
    }


async def evalsha_phase(redis_port: int, connections: int, seconds: float) -> float:
    """EVALSHA rate of reserve.lua against a taken slot, pipelined (Redis' own limit)."""
    redis = Redis(host="127.0.0.1", port=redis_port, max_connections=connections + 4)
    sha = await redis.script_load(source("reserve"))
    doctor, slot = "bench-doctor", "bench-doctor.01ARZ3NDEKTSV4RRFFQ69G5FAV"
    now = int(time.time() * 1000)
    await redis.hset(
        keys.slot(doctor, slot),
        mapping={"status": "requested", "start": now + 10**8, "end": now + 10**8 + 3_000_000,
                 "appointment_id": "someone", "start_s": "s", "end_s": "e"},
    )  # fmt: skip
    await redis.set(keys.doctor_hydrated(doctor), "1")
    slot_keys = [
        keys.slot(doctor, slot), keys.doctor_open_slots(doctor), keys.doctor_deadlines(doctor),
        keys.doctor_pending(doctor), keys.doctor_hydrated(doctor),
    ]  # fmt: skip
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            async with redis.pipeline(transaction=False) as pipe:
                for _ in range(64):
                    pipe.evalsha(sha, 5, *slot_keys, uuid.uuid4().hex, "p", now, 7_200_000,
                                 900_000, slot, "hm:t:bench", "{", "", "}")  # fmt: skip
                results = await pipe.execute()
            assert results[0][:2] == [0, b"slot_unavailable"], results[0]
            done += len(results)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    await redis.aclose()
    return done / elapsed


async def booking_phase(
    port: int, connections: int, seconds: float, slots: list[str], patients: list[str]
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    winners: Counter[str] = Counter()
    stop = time.perf_counter() + seconds
    rng = random.Random(7)

    async def client() -> None:
        conn = Conn(port)
        while time.perf_counter() < stop:
            slot = rng.choice(slots)
            headers = {"Authorization": f"Bearer {rng.choice(patients)}"}
            t = time.perf_counter()
            status, body = await conn.request(
                "POST", "/v1/appointments", headers, {"slot_id": slot}
            )
            latencies.append(time.perf_counter() - t)
            statuses[status] += 1
            if status == 201:
                winners[slot] += 1
            elif status >= 400:
                codes[json.loads(body).get("code", "?")] += 1
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "statuses": dict(statuses),
        "codes": dict(codes),
        "won": len(winners),
        "double_bookings": sum(1 for n in winners.values() if n > 1),
        "winners": winners,
    }


async def verify(port: int, doctors: list[tuple[str, str]], winners: Counter[str]) -> int:
    """Slots shown taken in the doctors' own agendas that have no single 201 (must be 0)."""
    mismatches = 0
    conn = Conn(port)
    to = iso(datetime.now(UTC) + timedelta(days=300))
    for _, token in doctors:
        status, body = await conn.request(
            "GET", f"/v1/me/slots?to={to}", {"Authorization": f"Bearer {token}"}
        )
        assert status == 200, body
        for item in json.loads(body)["items"]:
            taken = item["status"] != "open"
            if taken != (winners.get(item["id"], 0) == 1):
                mismatches += 1
    conn.close()
    return mismatches


async def main(args: argparse.Namespace) -> None:
    with running_stack() as (port, redis_port, data_dir):
        secret = (data_dir / "secrets" / "jwt_secret").read_text().strip()
        prefix = random.randrange(10**6, 9 * 10**6)
        doctors = await register_doctors(port, 1 + args.doctors, prefix)
        hot = doctors[0]
        hot_slots = await create_slots(port, hot[1], args.slots, 2)
        many_slots: list[str] = []
        for _, token in doctors[1:]:
            many_slots += await create_slots(port, token, args.slots_per_doctor, 2)
        patients = [forge(secret, f"P{uuid.uuid4().hex}", "patient") for _ in range(args.patients)]
        print(f"setup: {len(doctors)} doctors, {len(hot_slots)} hot slots, "
              f"{len(many_slots)} other slots, {len(patients)} patients")  # fmt: skip

        await live_phase(port, args.connections, 1.0)  # warm-up
        live = await live_phase(port, args.connections, args.seconds)
        print(f"live:    {live['rps']:8.0f} req/s  p50 {live['p50_ms']:.2f} ms  "
              f"p99 {live['p99_ms']:.2f} ms")  # fmt: skip
        evalsha = await evalsha_phase(redis_port, args.connections, min(args.seconds, 4))
        print(f"evalsha: {evalsha:8.0f} calls/s (reserve.lua, pipelined, same redis-server)")
        hot_run = await booking_phase(port, args.connections, args.seconds, hot_slots, patients)
        print(f"hot:     {hot_run['rps']:8.0f} bookings/s  p50 {hot_run['p50_ms']:.2f} ms  "
              f"p99 {hot_run['p99_ms']:.2f} ms  statuses {hot_run['statuses']}  "
              f"codes {hot_run['codes']}  slots won {hot_run['won']}/{len(hot_slots)}")  # fmt: skip
        many_run = await booking_phase(port, args.connections, args.seconds, many_slots, patients)
        print(f"many:    {many_run['rps']:8.0f} bookings/s  p50 {many_run['p50_ms']:.2f} ms  "
              f"p99 {many_run['p99_ms']:.2f} ms  statuses {many_run['statuses']}  "
              f"codes {many_run['codes']}  won {many_run['won']}/{len(many_slots)}")  # fmt: skip
        winners = hot_run["winners"] + many_run["winners"]
        mismatches = await verify(port, doctors, winners)
        doubles = hot_run["double_bookings"] + many_run["double_bookings"]
        per_slot = Counter(winners.values())
        print(f"winners per won slot: {dict(per_slot)} (must be {{1: n}}); "
              f"agenda mismatches: {mismatches}")  # fmt: skip
        errors_5xx = sum(
            n for s, n in (hot_run["statuses"] | many_run["statuses"]).items() if s >= 500
        )
        result = {
            "connections": args.connections,
            "bookings_per_s": round(hot_run["rps"]),
            "p50_ms": round(hot_run["p50_ms"], 2),
            "p99_ms": round(hot_run["p99_ms"], 2),
            "many_bookings_per_s": round(many_run["rps"]),
            "many_p99_ms": round(many_run["p99_ms"], 2),
            "evalsha_per_s": round(evalsha),
            "live_per_s": round(live["rps"]),
            "live_p99_ms": round(live["p99_ms"], 2),
            "ratio_vs_evalsha": round(hot_run["rps"] / evalsha, 3),
            "ratio_vs_live": round(hot_run["rps"] / live["rps"], 3),
            "many_ratio_vs_live": round(many_run["rps"] / live["rps"], 3),
            "double_bookings": doubles,
            "agenda_mismatches": mismatches,
            "errors_5xx": errors_5xx,
        }
        print(" ".join(f"{k}={v}" for k, v in result.items()))
        if doubles or mismatches:
            raise SystemExit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--slots", type=int, default=200, help="slots of the hot doctor")
    parser.add_argument("--doctors", type=int, default=20, help="doctors of the 'many' phase")
    parser.add_argument("--slots-per-doctor", type=int, default=100)
    parser.add_argument("--patients", type=int, default=5000)
    uvloop.run(main(parser.parse_args()))
