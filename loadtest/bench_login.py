"""Login and directory-search latency of a real server process, against a /health/live baseline.

Starts its own server (``python -m gateway.cli serve``) on a free port with a private data
directory, and a private ``redis-server`` when one is installed (``--redis embedded`` forces the
in-process Redis of ``make run``). Then, in one run:

1. baseline: ``GET /health/live`` from ``--concurrency`` clients for ``--seconds``;
2. logins: ``--logins`` patient logins from ``--concurrency`` clients at once (Argon2id verify
   each), while a probe measures ``/health/live`` latency, showing whether hashing stalls other
   requests;
3. search: ``GET /v1/doctors`` with mixed filters (specialty, location, max_km, min_rating) over
   ``--doctors`` registered doctors, from ``--concurrency`` clients for ``--seconds``.

Prints the figures, then one machine-readable ``key=value`` line (last line of output).
Usage: ``python loadtest/bench_login.py [--concurrency 50] [--logins 500] [--doctors 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.accounts.validators import cpf_check_digits  # noqa: E402

PASSWORD = "bench password 123"
SPECIALTIES = ["cardiologia", "dermatologia", "pediatria", "ortopedia", "neurologia"]
CENTER = (-23.55, -46.63)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready")


@contextlib.contextmanager
def running_server(mode: str, hash_concurrency: int | None) -> Iterator[tuple[str, str]]:
    """(base url, redis description) of a fresh server; everything is stopped afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="healthmed-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "HEALTHMED_DATA_DIR": str(data_dir),
        "HEALTHMED_HOST": "127.0.0.1",
        "HEALTHMED_PORT": str(free_port()),
        "HEALTHMED_LOG_LEVEL": "WARNING",
        "HEALTHMED_LOGIN_FAIL_LIMIT_ADDRESS": "1000000",
    }
    if hash_concurrency:
        env["HEALTHMED_HASH_CONCURRENCY"] = str(hash_concurrency)
    redis_desc = "embedded (in-process fakeredis)"
    binary = shutil.which("redis-server")
    if mode == "server" or (mode == "auto" and binary):
        if binary is None:
            raise SystemExit("--redis server needs redis-server on PATH")
        port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--loglevel",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        env["HEALTHMED_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        redis_desc = "private redis-server"
        time.sleep(0.3)
    else:
        env.pop("HEALTHMED_REDIS_URL", None)
    log = (data_dir / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    procs.insert(0, server)
    url = f"http://127.0.0.1:{env['HEALTHMED_PORT']}"
    try:
        wait_http(url + "/health/ready", server)
        yield url, redis_desc
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


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


async def run_for(
    concurrency: int,
    seconds: float | None,
    total: int | None,
    call: Callable[[int], Awaitable[httpx.Response]],
    expect: int = 200,
) -> tuple[list[float], float, int]:
    """Run ``call`` from ``concurrency`` workers for ``seconds`` or ``total`` calls in all."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds if seconds else None

    async def worker() -> None:
        nonlocal errors
        while True:
            i = next(counter)
            if total is not None and i >= total:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            start = time.perf_counter()
            try:
                r = await call(i)
                ok = r.status_code == expect
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start, errors


async def bench(args: argparse.Namespace, url: str) -> dict[str, float]:
    limits = httpx.Limits(
        max_connections=args.concurrency + 10, max_keepalive_connections=args.concurrency + 10
    )
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        rng = random.Random(7)
        seed = rng.randrange(10**6, 10**7)
        print(f"registering {args.patients} patients and {args.doctors} doctors ...", flush=True)
        patients = [f"bench{seed}-{i}@example.com" for i in range(args.patients)]

        async def register_patient(i: int) -> httpx.Response:
            base = f"{(seed * 1000 + i) % 10**9:09d}"
            return await http.post(
                "/v1/patients",
                json={
                    "name": f"P {i}",
                    "email": patients[i],
                    "cpf": base + cpf_check_digits(base),
                    "password": PASSWORD,
                },
            )

        async def register_doctor(i: int) -> httpx.Response:
            return await http.post(
                "/v1/doctors",
                json={
                    "name": f"Dr {i}",
                    "crm": f"{(seed * 1000 + i) % 10**8:08d}",
                    "uf": "SP",
                    "email": f"doc{seed}-{i}@example.com",
                    "password": PASSWORD,
                    "specialty": SPECIALTIES[i % len(SPECIALTIES)],
                    "price_cents": 10_000 + i,
                    "location": {
                        "lat": CENTER[0] + rng.uniform(-1, 1),
                        "lon": CENTER[1] + rng.uniform(-1, 1),
                    },
                },
            )

        for fn, n in ((register_patient, args.patients), (register_doctor, args.doctors)):
            _, _, errs = await run_for(16, None, n, fn, expect=201)
            if errs:
                raise SystemExit(f"{errs} registrations failed")

        results: dict[str, float] = {}
        print(f"\nconcurrency {args.concurrency}", flush=True)
        lat, el, err = await run_for(
            args.concurrency, args.seconds, None, lambda i: http.get("/health/live")
        )
        live = summary("health/live baseline", lat, el, err)

        probe: list[float] = []
        storm_done = asyncio.Event()

        async def live_probe() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=60) as own:
                while not storm_done.is_set():
                    start = time.perf_counter()
                    await own.get("/health/live")
                    probe.append(time.perf_counter() - start)
                    await asyncio.sleep(0.02)

        probe_task = asyncio.create_task(live_probe())

        async def login(i: int) -> httpx.Response:
            return await http.post(
                "/v1/auth/patients/login",
                json={"email": patients[i % len(patients)], "password": PASSWORD},
            )

        lat, el, err = await run_for(args.concurrency, None, args.logins, login)
        storm_done.set()
        await probe_task
        logins = summary("login", lat, el, err)
        during = summary("health/live in storm", probe, el, 0)

        token = (await login(0)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        queries = [
            {"specialty": "cardiologia"},
            {"lat": CENTER[0], "lon": CENTER[1], "max_km": 50},
            {"specialty": "pediatria", "lat": CENTER[0], "lon": CENTER[1]},
            {"min_rating": 0, "limit": 50},
            {
                "specialty": "ortopedia",
                "lat": CENTER[0],
                "lon": CENTER[1],
                "max_km": 80,
                "min_rating": 0,
            },
        ]

        async def search(i: int) -> httpx.Response:
            return await http.get("/v1/doctors", params=queries[i % len(queries)], headers=auth)

        lat, el, err = await run_for(args.concurrency, args.seconds, None, search)
        found = summary("search", lat, el, err)

        results.update(
            live_rps=live["rps"],
            live_p50_ms=live["p50_ms"],
            live_p99_ms=live["p99_ms"],
            login_rps=logins["rps"],
            login_p50_ms=logins["p50_ms"],
            login_p99_ms=logins["p99_ms"],
            login_errors=logins["errors"],
            live_during_login_p99_ms=during["p99_ms"],
            search_rps=found["rps"],
            search_p50_ms=found["p50_ms"],
            search_p99_ms=found["p99_ms"],
            search_errors=found["errors"],
            login_vs_live_rps=logins["rps"] / live["rps"] if live["rps"] else 0.0,
            search_vs_live_rps=found["rps"] / live["rps"] if live["rps"] else 0.0,
        )
        return results


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
    with running_server(args.redis, args.hash_concurrency) as (url, redis_desc):
        print(f"server {url}, redis: {redis_desc}, cpus: {os.cpu_count()}", flush=True)
        results = asyncio.run(bench(args, url))
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
