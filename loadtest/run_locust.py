"""``make loadtest USERS=N MINUTES=M``: the whole locust run on this machine, then its verdict.

1. a private ``redis-server`` on a free port, a data directory (fresh, or ``--data-dir`` to
   run on a store that holds earlier runs: Redis is rebuilt from it at start);
2. ``healthmed seed``: ``--doctors`` doctors (default one per 50 users) and one patient per
   user, a quarter of them with an ended appointment to rate;
3. ``healthmed serve --workers W`` (default 2);
4. distributed locust, headless: a master and one worker per core (``--procs``);
5. the end state through the API, every doctor logged in with the password: no slot with two
   active appointments (``double_bookings``), every agenda consistent with the appointments
   (``agenda_errors``), the appointments made during the run (``bookings``);
6. locust's table, then one line of ``key=value``: ``users rps p50_ms p95_ms p99_ms failures
   bookings double_bookings agenda_errors ws_connections ws_events_expected ws_events_missed
   loadavg``.

Exit status 0 when failures, double bookings, agenda errors and missed events are all zero.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import ROOT, free_port, stop, wait_port, wait_ready

BIN = Path(sys.executable).parent
ACTIVE = {"requested", "confirmed"}


def _env(data_dir: Path, redis_port: int, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "HEALTHMED_ENV": "test",
        "HEALTHMED_DATA_DIR": str(data_dir),
        "HEALTHMED_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "HEALTHMED_HOST": "127.0.0.1",
        "HEALTHMED_PORT": str(port),
        "HEALTHMED_LOG_LEVEL": "WARNING",
    }


def _pages(http: httpx.Client, path: str, token: str, params: dict[str, Any]) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        query = {**params, "limit": 100, **({"cursor": cursor} if cursor else {})}
        r = http.get(path, params=query, headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        body = r.json()
        items += body["items"]
        cursor = body.get("next_cursor")
        if not cursor:
            return items


def doctor_state(
    http: httpx.Client, token: str, windows: list[tuple[dt.datetime, dt.datetime]], since: str
) -> tuple[int, int, list[str]]:
    """One doctor's bookings since ``since``, slots with two active appointments, and what is
    inconsistent between its appointments and its slots."""
    appts = _pages(http, "/v1/appointments", token, {})
    bookings = sum(a["requested_at"] >= since for a in appts)
    active = [a for a in appts if a["status"] in ACTIVE]
    per_slot = Counter(a["slot"]["id"] for a in active)
    double = sum(1 for n in per_slot.values() if n > 1)
    by_slot = {a["slot"]["id"]: a for a in active}
    slots: list[dict[str, Any]] = []
    for lo, hi in windows:
        params = {
            "from": lo.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": hi.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        slots += _pages(http, "/v1/me/slots", token, params)
    errors: list[str] = []
    want = {None: "open", "requested": "requested", "confirmed": "booked"}
    for slot in slots:
        appt = by_slot.pop(slot["id"], None)
        state = want[appt["status"] if appt else None]
        if slot["status"] == "held":
            state = "held" if appt is None else state
        if slot["status"] != state or (appt and slot.get("appointment_id") != appt["id"]):
            errors.append(f"slot {slot} appointment {appt}")
    errors += [f"no slot for appointment {appt}" for appt in by_slot.values()]
    return bookings, double, errors


def check_end_state(url: str, creds: dict[str, Any], since: str) -> dict[str, int]:
    """Log every doctor in; compare its appointments with its slots. The appointments and the
    slots are two reads: a request still in flight when locust stopped (an accept queued
    behind the backlog) can land between them, so a doctor that looks inconsistent is read
    again, up to 5 times 2 s apart, and counts only if it still does: a real inconsistency
    stays."""
    double = agenda_errors = bookings = 0
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    windows = [
        (today - dt.timedelta(days=40), today),
        (today, today + dt.timedelta(days=60)),
        (today + dt.timedelta(days=60), today + dt.timedelta(days=120)),
    ]
    with httpx.Client(base_url=url, timeout=300) as http:
        for doctor in creds["doctors"]:
            r = http.post(
                "/v1/auth/doctors/login",
                json={"crm": doctor["crm"], "uf": doctor["uf"], "password": creds["password"]},
            )
            r.raise_for_status()
            token = r.json()["access_token"]
            reads = 0
            while True:
                made, two, errors = doctor_state(http, token, windows, since)
                reads += 1
                if not errors or reads == 5:
                    break
                time.sleep(2)
            bookings += made
            double += two
            for line in errors[: max(0, 5 - agenda_errors)]:
                print(f"agenda error: {line}", flush=True)
            if errors:
                print(f"(still inconsistent after {reads} reads)", flush=True)
            agenda_errors += len(errors)
    return {"bookings": bookings, "double_bookings": double, "agenda_errors": agenda_errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2, help="gateway processes")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 2, help="locust workers")
    parser.add_argument("--doctors", type=int, default=0, help="default: users / 50, >= 4")
    parser.add_argument("--spawn-rate", type=float, default=0, help="default: users / 20 s")
    parser.add_argument("--data-dir", type=Path, help="keep the store here (and reuse it)")
    parser.add_argument("--shape", choices=["steady", "rush"], default="")
    parser.add_argument("--profile", type=Path, help="py-spy the gateway; collapsed stacks here")
    parser.add_argument("--locust-args", default="", help="more locust options")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="healthmed-locust-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    doctors = args.doctors or max(4, args.users // 50)
    procs: list[subprocess.Popen[bytes]] = []
    spy: subprocess.Popen[bytes] | None = None
    log = (data_dir / "server.log").open("ab")
    try:
        redis_port, port = free_port(), free_port()
        binary = shutil.which("redis-server") or "redis-server"
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--maxclients",
                    "50000",
                    "--loglevel",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_port(redis_port, procs[-1])
        env = _env(data_dir, redis_port, port)
        creds_path = data_dir / "seed-credentials.json"
        began = time.monotonic()
        subprocess.run(
            [
                BIN / "healthmed",
                "seed",
                "--doctors",
                str(doctors),
                "--patients",
                str(args.users),
                "--past",
                str(args.users // 4),
                "--out",
                str(creds_path),
            ],
            env=env,
            check=True,
            cwd=ROOT,
        )
        print(f"seeded in {time.monotonic() - began:.0f} s", flush=True)
        procs.append(
            subprocess.Popen(
                [BIN / "healthmed", "serve", "--workers", str(args.workers)],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/health/ready", procs[-1], seconds=300)
        since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        summary_path = data_dir / "locust-summary.json"
        files = "loadtest/locustfile.py" + (
            f",loadtest/shape_{args.shape}.py" if args.shape else ""
        )
        rate = args.spawn_rate or max(1.0, args.users / 20)
        common = [
            "-f",
            files,
            "--credentials",
            str(creds_path),
            "--locust-workers",
            str(args.procs),
            "--host",
            url,
        ]
        if args.profile:
            # Until SIGINT, which makes it write the stacks (SIGTERM would lose them).
            spy = subprocess.Popen(
                [BIN / "py-spy", "record", "--pid", str(procs[1].pid), "--subprocesses",
                 "--rate", "40", "--format", "raw", "--nonblocking", "-o", str(args.profile)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        master_port = free_port()
        workers = [
            subprocess.Popen(
                [BIN / "locust", *common, "--worker", "--master-port", str(master_port)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=(data_dir / f"locust-w{i}.log").open("wb"),
            )
            for i in range(args.procs)
        ]
        procs += workers
        master = subprocess.run(
            [
                BIN / "locust",
                *common,
                "--master",
                "--headless",
                "--master-bind-port",
                str(master_port),
                "--expect-workers",
                str(args.procs),
                "-u",
                str(args.users),
                "-r",
                str(rate),
                "-t",
                f"{int(args.minutes * 60)}s",
                "--stop-timeout",
                "40",
                "--summary",
                str(summary_path),
                "--only-summary",
                *args.locust_args.split(),
            ],
            cwd=ROOT,
            check=False,
        )
        load = os.getloadavg()[0]
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=120)
        summary = json.loads(summary_path.read_text())
        creds = json.loads(creds_path.read_text())
        state = check_end_state(url, creds, since)
    finally:
        stop(procs[::-1] + ([spy] if spy is not None and spy.poll() is None else []))
        log.close()
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    ws = summary["ws"]
    expected = sum(ws.get(k, {}).get("count", 0) for k in ("decision event", "slot event"))
    missed = sum(ws.get(k, {}).get("failures", 0) for k in ("decision event", "slot event"))
    connections = ws.get("connect", {}).get("count", 0) - ws.get("connect", {}).get("failures", 0)
    ws_failures = sum(v["failures"] for v in ws.values())
    for error in summary["errors"][:20]:
        print(f"error: {error['count']} x {error['method']} {error['name']}: {error['error']}")
    figures = {
        "users": args.users,
        "rps": f"{summary['rps']:.0f}",
        "p50_ms": summary["p50_ms"],
        "p95_ms": summary["p95_ms"],
        "p99_ms": summary["p99_ms"],
        "failures": summary["failures"] + ws_failures - missed,
        **state,
        "ws_connections": connections,
        "ws_events_expected": expected,
        "ws_events_missed": missed,
        "loadavg": f"{load:.2f}",
        "gateway_workers": args.workers,
        "locust_workers": args.procs,
    }
    print(" ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    bad = figures["failures"] or state["double_bookings"] or state["agenda_errors"] or missed
    return 1 if bad or master.returncode not in (0, 1) else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
