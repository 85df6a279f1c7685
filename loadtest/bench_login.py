"""Login and directory-search latency of a real server process, against a /health/live baseline.

Starts its own server (``python -m gateway.cli serve``) on a free port with a private data
directory, and a private ``redis-server`` when one is installed (``--redis embedded`` forces the
in-process Redis of ``make run``). Registers ``--patients`` patients and ``--doctors`` doctors
for real (Argon2id hash each). Then, in one run, every phase from ``--concurrency`` keep-alive
connections of a minimal HTTP/1.1 client (``loadtest/_bench.py``):

1. baseline: ``GET /health/live`` for ``--seconds``;
2. logins: ``--logins`` patient logins (Argon2id verify each), while a probe on its own
   connection measures ``/health/live`` latency, showing whether hashing stalls other requests;
3. search: ``GET /v1/doctors`` with mixed filters (specialty, location, max_km, min_rating) over
   the ``--doctors`` registered doctors, for ``--seconds``.

Prints the figures, then one machine-readable ``key=value`` line (last line of output).
Usage: ``python loadtest/bench_login.py [--concurrency 50] [--logins 500] [--doctors 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable
from urllib.parse import urlencode

import uvloop
from _bench import PASSWORD, SETUP_CONCURRENCY, Conn, pct, run_for, running_stack

from engine.accounts.validators import cpf_check_digits  # importable once _bench ran

SPECIALTIES = ["cardiologia", "dermatologia", "pediatria", "ortopedia", "neurologia"]
CENTER = (-23.55, -46.63)


def summary(name: str, latencies: list[float], elapsed: float, errors: int) -> dict[str, float]:
    ms = [x * 1000 for x in latencies]
    stats = {
        "n": len(ms),
        "rps": len(ms) / elapsed if elapsed else 0.0,
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
        "errors": errors,
    }
    print(
        f"{name:<22} n={stats['n']:<6} {stats['rps']:8.1f} req/s   p50 {stats['p50_ms']:7.1f} ms"
        f"   p99 {stats['p99_ms']:7.1f} ms   errors {errors}"
    )
    return stats


async def bench(args: argparse.Namespace, port: int) -> dict[str, float]:
    rng = random.Random(7)
    seed = rng.randrange(10**6, 10**7)
    patients = [f"bench{seed}-{i}@example.com" for i in range(args.patients)]

    def register_patient(conn: Conn, i: int) -> Awaitable[tuple[int, bytes]]:
        base = f"{(seed * 1000 + i) % 10**9:09d}"
        return conn.request("POST", "/v1/patients", body={
            "name": f"P {i}", "email": patients[i], "cpf": base + cpf_check_digits(base),
            "password": PASSWORD,
        })  # fmt: skip

    def register_doctor(conn: Conn, i: int) -> Awaitable[tuple[int, bytes]]:
        return conn.request("POST", "/v1/doctors", body={
            "name": f"Dr {i}", "crm": f"{(seed * 1000 + i) % 10**8:08d}", "uf": "SP",
            "email": f"doc{seed}-{i}@example.com", "password": PASSWORD,
            "specialty": SPECIALTIES[i % len(SPECIALTIES)], "price_cents": 10_000 + i,
            "location": {"lat": CENTER[0] + rng.uniform(-1, 1),
                         "lon": CENTER[1] + rng.uniform(-1, 1)},
        })  # fmt: skip

    print(
        f"registering {args.patients} patients and {args.doctors} doctors "
        f"({SETUP_CONCURRENCY} at a time) ...",
        flush=True,
    )
    t0 = time.perf_counter()
    for fn, n in ((register_patient, args.patients), (register_doctor, args.doctors)):
        _, _, errs = await run_for(port, SETUP_CONCURRENCY, fn, total=n, expect=201)
        if errs:
            raise SystemExit(f"{errs} registrations failed")
    print(f"registered in {time.perf_counter() - t0:.1f} s", flush=True)

    def live(conn: Conn, i: int) -> Awaitable[tuple[int, bytes]]:
        return conn.request("GET", "/health/live")

    def login(conn: Conn, i: int) -> Awaitable[tuple[int, bytes]]:
        return conn.request(
            "POST",
            "/v1/auth/patients/login",
            body={"email": patients[i % len(patients)], "password": PASSWORD},
        )

    print(f"\nconcurrency {args.concurrency}", flush=True)
    await run_for(port, args.concurrency, live, seconds=1.0)  # warm-up
    lat, el, err = await run_for(port, args.concurrency, live, seconds=args.seconds)
    baseline = summary("health/live baseline", lat, el, err)

    probe: list[float] = []
    storm_done = asyncio.Event()

    async def live_probe() -> None:
        own = Conn(port)
        while not storm_done.is_set():
            start = time.perf_counter()
            status, _ = await own.request("GET", "/health/live")
            if status == 200:
                probe.append(time.perf_counter() - start)
            await asyncio.sleep(0.02)
        own.close()

    probe_task = asyncio.create_task(live_probe())
    lat, el, err = await run_for(port, args.concurrency, login, total=args.logins)
    storm_done.set()
    await probe_task
    logins = summary("login", lat, el, err)
    during = summary("health/live in storm", probe, el, 0)

    conn = Conn(port)
    status, body = await login(conn, 0)
    conn.close()
    if status != 200:
        raise SystemExit(f"login failed: {status} {body[:200]!r}")
    auth = {"Authorization": f"Bearer {json.loads(body)['access_token']}"}
    queries = [
        {"specialty": "cardiologia"},
        {"lat": CENTER[0], "lon": CENTER[1], "max_km": 50},
        {"specialty": "pediatria", "lat": CENTER[0], "lon": CENTER[1]},
        {"min_rating": 0, "limit": 50},
        {"specialty": "ortopedia", "lat": CENTER[0], "lon": CENTER[1], "max_km": 80,
         "min_rating": 0},
    ]  # fmt: skip
    paths = [f"/v1/doctors?{urlencode(q)}" for q in queries]

    def search(conn: Conn, i: int) -> Awaitable[tuple[int, bytes]]:
        return conn.request("GET", paths[i % len(paths)], auth)

    lat, el, err = await run_for(port, args.concurrency, search, seconds=args.seconds)
    found = summary("search", lat, el, err)

    live_rps = baseline["rps"]
    return {
        "live_rps": live_rps,
        "live_p50_ms": baseline["p50_ms"],
        "live_p99_ms": baseline["p99_ms"],
        "login_rps": logins["rps"],
        "login_p50_ms": logins["p50_ms"],
        "login_p99_ms": logins["p99_ms"],
        "login_errors": logins["errors"],
        "live_during_login_p99_ms": during["p99_ms"],
        "search_rps": found["rps"],
        "search_p50_ms": found["p50_ms"],
        "search_p99_ms": found["p99_ms"],
        "search_errors": found["errors"],
        "login_vs_live_rps": logins["rps"] / live_rps if live_rps else 0.0,
        "search_vs_live_rps": found["rps"] / live_rps if live_rps else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--logins", type=int, default=500)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--doctors", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redis", choices=["auto", "server", "embedded"], default="auto")
    parser.add_argument(
        "--hash-concurrency",
        type=int,
        default=None,
        help="HEALTHMED_HASH_CONCURRENCY for the server (default: its own)",
    )
    args = parser.parse_args()
    env = {"HEALTHMED_LOGIN_FAIL_LIMIT_ADDRESS": "1000000"}  # every client is 127.0.0.1
    if args.hash_concurrency:
        env["HEALTHMED_HASH_CONCURRENCY"] = str(args.hash_concurrency)
    with running_stack(args.redis, env) as stack:
        print(f"server {stack.url}, redis: {stack.redis_desc}, cpus: {os.cpu_count()}", flush=True)
        results = uvloop.run(bench(args, stack.port))
    print()
    print(
        " ".join(
            [f"concurrency={args.concurrency}", f"redis={args.redis}"]
            + [f"{k}={v:.3f}" if "_vs_" in k else f"{k}={v:.1f}" for k, v in results.items()]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
