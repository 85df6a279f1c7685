"""Store write latency at two table sizes, in one run: a write must not cost more as data grows.

Fills two fresh SQLite stores (the embedded default), one to ``--small`` rows and one to
``--large``, then times ``--writes`` booking-shaped transactions on each (a slot updated at its
version, an appointment and two index items written absent: four version checks, four
writes), alternating rounds of 100 between the two stores so that the noise of a shared
machine falls on both alike. Prints p50/p99 of each and the ratio large/small of each; the
store's writes are key lookups, so the ratios stay near 1 (the issue's bound: under 1.5).

    .venv/bin/python loadtest/bench_store.py [--small 10000] [--large 300000] [--writes 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.store import Item, Put, SQLiteStore  # noqa: E402

FILL_CHUNK = 5000
ROUND = 100


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fill(store: SQLiteStore, start: int, stop: int) -> None:
    """Rows shaped like the real ones: doctors' slot partitions and appointment items."""
    for i in range(start, stop, FILL_CHUNK):
        await store.put_many(
            [
                Item(
                    pk=slot_key(n)[0],
                    sk=slot_key(n)[1],
                    data={"status": "open", "start": n, "end": n + 3000},
                )
                for n in range(i, min(stop, i + FILL_CHUNK))
            ]
        )


def slot_key(n: int) -> tuple[str, str]:
    return f"DOC#{n // 50:08d}", f"SLOT#2026-12-{1 + n % 28:02d}T10:00:00Z#{n:010d}"


async def writes(store: SQLiteStore, count: int, first: int, rows: int, tag: str) -> list[float]:
    """``count`` booking-shaped transactions, one at a time, on slots spread over the table;
    milliseconds each."""
    spent = []
    for n in range(first, first + count):
        slot = await store.get(*slot_key((n * 7919) % rows))
        appt = f"{tag}-{n}"
        ops = [
            Put(
                item=Item(pk=f"APPT#{appt}", sk="APPT", data={"status": "requested"}),
                expect="absent",
            ),
            Put(item=Item(pk=f"USER#p{n}", sk=f"APPT#{appt}", data={}), expect="absent"),
            Put(item=Item(pk=f"USER#d{n}", sk=f"APPT#{appt}", data={}), expect="absent"),
        ]
        if slot is not None:
            ops.append(
                Put(
                    item=Item(pk=slot.pk, sk=slot.sk, data={**slot.data, "status": "requested"}),
                    expect=slot.version,
                )
            )
        began = time.perf_counter()
        await store.transact(ops)
        spent.append((time.perf_counter() - began) * 1000)
    return spent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=300_000)
    parser.add_argument("--writes", type=int, default=2000)
    args = parser.parse_args()
    sizes = {"small": args.small, "large": args.large}
    spent: dict[str, list[float]] = {label: [] for label in sizes}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        stores = {label: await SQLiteStore.open(Path(tmp) / f"{label}.sqlite3") for label in sizes}
        try:
            for label, size in sizes.items():
                began = time.perf_counter()
                await fill(stores[label], 0, size)
                print(f"{label}: filled to {size} rows in {time.perf_counter() - began:.1f} s")
                await writes(stores[label], 200, 0, size, f"warm-{label}")
            for first in range(0, args.writes, ROUND):
                for label, size in sizes.items():
                    spent[label] += await writes(
                        stores[label], min(ROUND, args.writes - first), first, size, label
                    )
        finally:
            for store in stores.values():
                await store.close()
    figures = {label: (pct(v, 0.5), pct(v, 0.99)) for label, v in spent.items()}
    for label, (p50, p99) in figures.items():
        print(
            f"{label}: rows={sizes[label]} writes={args.writes} p50_ms={p50:.3f} p99_ms={p99:.3f}"
        )
    load = os.getloadavg()
    p50 = figures["large"][0] / figures["small"][0]
    p99 = figures["large"][1] / figures["small"][1]
    print(
        f"small_rows={args.small} large_rows={args.large} ratio_p50={p50:.2f} ratio_p99={p99:.2f} "
        f"loadavg={load[0]:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
