"""The slot-creation script's own run time on an empty and on a crowded agenda.

Starts a private ``redis-server`` and runs the engine's ``BookingService`` in process (SQLite
store in a temporary directory). For each agenda size N it makes a doctor, seeds N tiny slots
(2 ms each, as an agenda built before the 5-minute minimum could hold) into the four hours
before a batch, then creates a batch of ``--batch`` back-to-back 5-minute slots through
``create_slots`` and reads the script's run time from Redis' own SLOWLOG (microseconds, the
script alone, no network). Best of ``--repeat`` runs each.

Usage: ``python loadtest/bench_slots.py [--sizes 0,5000,20000] [--batch 48]``. Last line:
``key=value`` pairs (``us_<N>``: the script's time with N seeded slots, or ``error``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _bench import free_port, wait_port
from redis.asyncio import Redis

from engine import keys  # importable once _bench ran
from engine.booking import BookingService, CreateSlots, SlotTimes
from engine.config import Settings
from engine.principal import Principal
from engine.store import SQLiteStore
from engine.timeutil import new_id, now_ms, to_rfc3339

HOUR = 3_600_000
MIN = 60_000


class Accounts:
    async def get_doctor(self, doctor_id: str) -> Any:
        return SimpleNamespace(id=doctor_id, price=SimpleNamespace(amount_cents=1, currency="BRL"))


def _doctor() -> Principal:
    return Principal(user_id=new_id(), role="doctor", jti=new_id(), issued_at=0, expires_at=0)


def _body(start: int, count: int) -> CreateSlots:
    return CreateSlots(
        slots=[
            SlotTimes(
                start=to_rfc3339(start + i * 5 * MIN), end=to_rfc3339(start + (i + 1) * 5 * MIN)
            )
            for i in range(count)
        ]
    )


async def one(redis: Redis, service: BookingService, seeds: int, batch: int) -> str:
    doc = _doctor()
    base = now_ms() + 24 * HOUR
    await service.create_slots(doc, _body(base - 10 * HOUR, 1))  # hydrates the doctor
    if seeds:
        step = (4 * HOUR) // seeds
        starts = {f"{doc.user_id}.seed{i:06d}": base - 4 * HOUR + i * step for i in range(seeds)}
        await redis.zadd(keys.doctor_slots(doc.user_id), starts)
        ends = {member: start + 2 for member, start in starts.items()}
        await redis.hset(keys.doctor_slot_ends(doc.user_id), mapping=ends)  # type: ignore[arg-type]
    await redis.config_set("slowlog-log-slower-than", 0)
    await redis.slowlog_reset()
    try:
        await service.create_slots(doc, _body(base, batch))
    except Exception as exc:
        return f"error:{type(exc).__name__}"
    finally:
        entries = await redis.slowlog_get(128)
        await redis.config_set("slowlog-log-slower-than", 10_000)
    times = [
        int(e["duration"]) for e in entries if bytes(e["command"]).lower().startswith(b"evalsha")
    ]
    return str(max(times))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,5000,20000")
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (on PATH)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tmp = Path(tempfile.mkdtemp(prefix="healthmed-bench-slots-"))
    try:
        wait_port(port, proc)
        redis = Redis.from_url(f"redis://127.0.0.1:{port}/0")
        store = await SQLiteStore.open(tmp / "store.sqlite3")
        fields = {"meeting_secret": "m" * 48, "jwt_secret": "j" * 48, "max_future_slots": 10**6}
        try:
            settings = Settings(**fields)  # type: ignore[arg-type]
        except TypeError:  # a tree without the cap
            fields.pop("max_future_slots")
            settings = Settings(**fields)  # type: ignore[arg-type]
        service = BookingService(settings, store, redis, Accounts())  # type: ignore[arg-type]
        results: dict[str, str] = {}
        for size in (int(s) for s in args.sizes.split(",")):
            runs = [await one(redis, service, size, args.batch) for _ in range(args.repeat)]
            numeric = [int(r) for r in runs if r.isdigit()]
            results[f"us_{size}"] = str(min(numeric)) if numeric else runs[0]
            print(f"{size:6d} seeded slots: create.lua {results[f'us_{size}']} us (runs {runs})")
        await store.close()
        await redis.aclose()
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[0]
    print(" ".join(f"{k}={v}" for k, v in results.items()) + f" batch={args.batch} loadavg={load}")


if __name__ == "__main__":
    asyncio.run(main())
