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
shows exactly the slots that were won as taken. Patients are real accounts made by
``healthmed seed`` (one shared Argon2 hash), using access tokens signed with the server's
generated secret (same claims as a login); doctors register and log in for real. Real
patients matter: each won slot queues e-mails to both sides, and a patient id with no
account made every one of them fail and be retried up to ``HEALTHMED_MAIL_MAX_ATTEMPTS``
times on the server under test.

The HTTP client is the minimal keep-alive HTTP/1.1 client of ``loadtest/_bench.py`` on raw
asyncio streams (uvloop): the client shares the machine with the server, so a heavy client would
eat the server's CPU.

Usage: ``python loadtest/bench_booking.py [--connections 64] [--seconds 8]``. Last line:
``key=value`` pairs (``bookings_per_s``, ``p99_ms``, ``ratio_vs_evalsha``, ``ratio_vs_live``,
``double_bookings``, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import uvloop
from _bench import PASSWORD, SETUP_CONCURRENCY, Conn, forge_token, iso, pct, run_for, running_stack
from redis.asyncio import Redis

from engine import keys  # importable once _bench ran
from engine.lua import source


# --- setup --------------------------------------------------------------------------------------
async def register_doctors(port: int, count: int, prefix: int) -> list[tuple[str, str]]:
    """(doctor id, access token) for ``count`` freshly registered doctors."""

    async def one(i: int) -> tuple[str, str]:
        conn = Conn(port)
        n = prefix + i
        status, body = await conn.post_json("/v1/doctors", {
            "name": f"Dr Bench {n}", "crm": f"{n % 10**8:08d}", "uf": "SP",
            "email": f"bench{n}@example.com", "password": PASSWORD, "specialty": "cardiologia",
            "price_cents": 25_000, "location": {"lat": -23.55, "lon": -46.63},
        })  # fmt: skip
        assert status == 201, body
        doctor_id = body["id"]
        status, body = await conn.post_json(
            "/v1/auth/doctors/login",
            {"crm": f"{n % 10**8:08d}", "uf": "SP", "password": PASSWORD},
        )
        assert status == 200, body
        conn.close()
        return doctor_id, body["access_token"]

    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

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
        status, body = await conn.post_json(
            "/v1/me/slots", {"slots": spans}, {"Authorization": f"Bearer {token}"}
        )
        assert status == 201, body
        ids += [item["id"] for item in body["items"]]
    conn.close()
    return ids


# --- phases -------------------------------------------------------------------------------------
async def live_phase(port: int, connections: int, seconds: float) -> dict[str, float]:
    latencies, elapsed, errors = await run_for(
        port, connections, lambda conn, _: conn.request("GET", "/health/live"), seconds=seconds
    )
    assert not errors, f"{errors} /health/live requests failed"
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
    }


async def evalsha_phase(redis_port: int, connections: int, seconds: float) -> float:
    """EVALSHA rate of reserve.lua against a taken slot, pipelined (Redis' own limit)."""
    redis = Redis(host="127.0.0.1", port=redis_port, max_connections=connections + 4)
    sha = await redis.script_load(source("engine.booking", "reserve"))
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
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
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
        cursor = ""
        while True:
            status, body = await conn.get_json(
                f"/v1/me/slots?to={to}&limit=100{cursor}", {"Authorization": f"Bearer {token}"}
            )
            assert status == 200, body
            for item in body["items"]:
                taken = item["status"] != "open"
                if taken != (winners.get(item["id"], 0) == 1):
                    mismatches += 1
            if not body["next_cursor"]:
                break
            cursor = f"&cursor={body['next_cursor']}"
    conn.close()
    return mismatches


async def main(args: argparse.Namespace) -> None:
    with running_stack("server", {"HEALTHMED_ENV": "test"}) as stack:
        port, redis_port, secret = stack.port, stack.redis_port, stack.jwt_secret()
        assert redis_port is not None
        prefix = random.randrange(10**6, 9 * 10**6)
        doctors = await register_doctors(port, 1 + args.doctors, prefix)
        hot = doctors[0]
        hot_slots = await create_slots(port, hot[1], args.slots, 2)
        many_slots: list[str] = []
        for _, token in doctors[1:]:
            many_slots += await create_slots(port, token, args.slots_per_doctor, 2)
        seeded = stack.seed(patients=args.patients)["patients"]
        patients = [forge_token(secret, p["id"], "patient") for p in seeded]
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
    parser.add_argument("--patients", type=int, default=2000, help="seeded patients")
    uvloop.run(main(parser.parse_args()))
