"""The HTTP edge's request rate and its limits, on a real server process.

Starts one server (``running_stack``, in-process Redis: ``GET /health/live`` touches nothing
else), then:

1. ``live``: ``GET /health/live`` from ``--connections`` keep-alive clients for ``--seconds``
   (after a one-second warm-up): the cheapest request, so the protocol's own cost shows;
2. ``big_head``: one request with a ``--head-mib`` MiB header: the status line it gets (431 once
   the head is bounded; before, the server buffered it all);
3. ``idle``: one socket that sends nothing: after how many seconds the server closed it (or
   ``open`` after ``--idle-seconds``).

Run it on two trees (before/after a change) alternately and compare ``live_rps`` of runs
made minutes apart; write ``cat /proc/loadavg`` next to each figure.

Usage: ``python loadtest/bench_edge.py [--connections 32] [--seconds 5]``. Last line:
``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import socket
import time

import uvloop
from _bench import pct, run_for, running_stack


async def live(port: int, connections: int, seconds: float) -> tuple[float, float]:
    latencies, elapsed, errors = await run_for(
        port, connections, lambda conn, _: conn.request("GET", "/health/live"), seconds=seconds
    )
    assert not errors, f"{errors} /health/live requests failed"
    return len(latencies) / elapsed, pct(latencies, 99) * 1000


def big_head(port: int, mib: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: bench\r\nX-Big: ")
        try:
            for _ in range(mib * 16):
                sock.sendall(b"a" * 65536)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass
        try:
            line = sock.recv(200).split(b"\r\n")[0].decode() or "closed"
        except OSError as exc:
            line = type(exc).__name__
    return line.replace(" ", "_")


def idle(port: int, seconds: float) -> str:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        try:
            sock.recv(200)
        except TimeoutError:
            return "open"
        except OSError:
            pass
    return f"{time.monotonic() - began:.1f}s"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--head-mib", type=int, default=16)
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    args = parser.parse_args()
    with running_stack("embedded") as stack:
        await live(stack.port, args.connections, 1.0)
        rps, p99 = await live(stack.port, args.connections, args.seconds)
        print(f"live: {rps:8.0f} req/s  p99 {p99:.2f} ms", flush=True)
        head = big_head(stack.port, args.head_mib)
        print(f"big head ({args.head_mib} MiB): {head}", flush=True)
        quiet = idle(stack.port, args.idle_seconds)
        print(f"idle socket: {quiet}", flush=True)
        with open("/proc/loadavg") as fh:
            load = fh.read().split()[0]
    print(f"live_rps={rps:.0f} live_p99_ms={p99:.2f} big_head={head} idle={quiet} loadavg={load}")


if __name__ == "__main__":
    uvloop.run(main())
