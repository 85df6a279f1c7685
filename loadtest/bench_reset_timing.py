"""Does ``POST /v1/auth/password-reset`` answer as fast for an existing account as for none?

Starts its own server (``loadtest/_bench.py``: private redis-server, private data directory),
registers one patient, then sends ``--rounds`` reset requests of each kind from one keep-alive
connection, an unknown e-mail and the patient's e-mail (same length) in a shuffled order (so
neither side always follows the other, whose after-answer work would be charged to it; seed
``--seed``), and prints each side's
median and p90 response time and their ratio. Only the first few requests for the patient
queue an e-mail (5 an hour); every one of them still looks the account up, after the answer.

Usage: ``python loadtest/bench_reset_timing.py [--rounds 200]``. Last line: ``key=value``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from _bench import PASSWORD, Conn, pct, running_stack


async def measure(port: int, rounds: int, seed: int) -> dict[str, float]:
    conn = Conn(port)
    known = "reset.bench.known@example.com"
    unknown = "reset.bench.xnown@example.com"
    status, body = await conn.post_json(
        "/v1/patients",
        {"name": "Bench", "email": known, "cpf": "52998224725", "password": PASSWORD},
    )
    assert status == 201, body
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    order = ["known", "unknown"] * rounds
    random.Random(seed).shuffle(order)
    for side in order:
        start = time.perf_counter()
        status, _ = await conn.post_json(
            "/v1/auth/password-reset", {"email": known if side == "known" else unknown}
        )
        times[side].append((time.perf_counter() - start) * 1000)
        assert status == 202, status
    conn.close()
    out: dict[str, float] = {}
    for side, ms in times.items():
        out[f"{side}_p50_ms"] = statistics.median(ms)
        out[f"{side}_p90_ms"] = pct(ms, 90)
    out["ratio_p50"] = out["known_p50_ms"] / out["unknown_p50_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    with running_stack("server") as stack:
        figures = asyncio.run(measure(stack.port, args.rounds, args.seed))
    for key, value in figures.items():
        print(f"{key:16} {value:8.3f}")
    print(" ".join(f"{k}={v:.3f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
