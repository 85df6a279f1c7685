"""Shared pieces of the HTTP benchmarks (``bench_login.py``, ``bench_booking.py``).

* ``running_stack``: a private ``redis-server`` (or the in-process Redis) and one server process
  (``python -m gateway.cli serve``) on free ports with a private data directory, stopped and
  removed afterwards;
* ``Conn``: a minimal keep-alive HTTP/1.1 client on raw asyncio streams. The load client shares
  the machine with the server, so a heavy client (httpx: ~450 req/s on ``/health/live`` here,
  against ~5,000 for this one) would measure itself and eat the server's CPU;
* ``run_for``: ``concurrency`` connections calling one request in a loop, for a duration or a
  number of calls; ``pct``, ``free_port``, ``forge_token``, ``iso``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import jwt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PASSWORD = "bench password 123"
# Registrations and logins hash with Argon2id on the server, behind HEALTHMED_HASH_CONCURRENCY
# permits (default: the CPU count); twice that many requests in flight keeps every permit busy
# without queueing hundreds of requests behind them.
SETUP_CONCURRENCY = 2 * max(2, os.cpu_count() or 2)


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


def wait_ready(url: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass(frozen=True)
class Stack:
    port: int
    url: str
    data_dir: Path
    redis_port: int | None  # None: the server's in-process Redis
    redis_desc: str

    def jwt_secret(self) -> str:
        """The access-token secret the server generated into its data directory."""
        return (self.data_dir / "secrets" / "jwt_secret").read_text().strip()

    def seed(self, *, patients: int = 0, doctors: int = 0, days: int = 14) -> dict[str, Any]:
        """``healthmed seed`` into this stack's store and Redis (real accounts, one shared
        Argon2 hash, no hash per account); the credentials it wrote."""
        out = self.data_dir / f"seed-{uuid.uuid4().hex}.json"
        env = {**os.environ, "HEALTHMED_DATA_DIR": str(self.data_dir), "HEALTHMED_ENV": "test",
               "HEALTHMED_LOG_LEVEL": "WARNING"}  # fmt: skip
        env.pop("HEALTHMED_REDIS_URL", None)
        if self.redis_port is not None:
            env["HEALTHMED_REDIS_URL"] = f"redis://127.0.0.1:{self.redis_port}/0"
        subprocess.run(
            [sys.executable, "-m", "gateway.cli", "seed", "--patients", str(patients),
             "--doctors", str(doctors), "--days", str(days), "--out", str(out)],
            cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        credentials: dict[str, Any] = json.loads(out.read_text())
        return credentials


@contextlib.contextmanager
def running_stack(
    redis: Literal["auto", "server", "embedded"] = "server", env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """A fresh (redis-server +) server on free ports and a private data directory.

    ``redis``: ``server`` needs ``redis-server`` on PATH, ``auto`` uses it when installed,
    ``embedded`` lets the server run its in-process Redis. ``env`` is added to the server's
    environment (after ``os.environ``). Everything is stopped and removed afterwards.
    """
    binary = shutil.which("redis-server")
    if redis == "server" and binary is None:
        raise SystemExit("redis-server is not installed (on PATH)")
    data_dir = Path(tempfile.mkdtemp(prefix="healthmed-bench-"))
    procs: list[subprocess.Popen[bytes]] = []  # stopped in reverse order: server first
    log = (data_dir / "server.log").open("ab")
    try:
        server_env = {
            **os.environ,
            "HEALTHMED_DATA_DIR": str(data_dir),
            "HEALTHMED_HOST": "127.0.0.1",
            "HEALTHMED_PORT": str(free_port()),
            "HEALTHMED_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        redis_port: int | None = None
        redis_desc = "embedded (in-process fakeredis)"
        if binary is not None and redis != "embedded":
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
            server_env["HEALTHMED_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            redis_desc = "private redis-server"
        else:
            server_env.pop("HEALTHMED_REDIS_URL", None)
        port = int(server_env["HEALTHMED_PORT"])
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve"],
                cwd=ROOT,
                env=server_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/health/ready", procs[-1])
        yield Stack(port, url, data_dir, redis_port, redis_desc)
    finally:
        stop(procs[::-1])
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


# --- a minimal keep-alive HTTP/1.1 client -------------------------------------------------------
class Conn:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:``port``, one request at a time.

    Opens lazily, reopens after ``Connection: close`` or an error. Reads ``Content-Length`` and
    chunked bodies; no redirects, no TLS, no timeouts (callers bound whole phases).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        """(status, body bytes); ``body`` is sent as JSON when given."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        reader = self.reader
        assert reader is not None
        payload = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(payload)}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        if headers:
            lines += [f"{k}: {v}" for k, v in headers.items()]
        try:
            self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            chunked = close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = b"close" in value.lower()
            if chunked:
                data = await self._chunks(reader)
            else:
                data = await reader.readexactly(length) if length else b""
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, data

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers from our server
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def get_json(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        status, data = await self.request("GET", path, headers)
        return status, json.loads(data) if data else None

    async def post_json(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        status, data = await self.request("POST", path, headers, body)
        return status, json.loads(data) if data else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# --- measuring ----------------------------------------------------------------------------------
def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile ``p`` (0-100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


async def run_for(
    port: int,
    concurrency: int,
    call: Callable[[Conn, int], Awaitable[tuple[int, bytes]]],
    *,
    seconds: float | None = None,
    total: int | None = None,
    expect: int = 200,
) -> tuple[list[float], float, int]:
    """(latencies of the ``expect`` answers in s, elapsed s, other answers and errors).

    ``concurrency`` workers, each with its own keep-alive ``Conn``, call ``call(conn, i)``
    (``i`` counts calls over all workers) until ``seconds`` have passed or ``total`` calls have
    started.
    """
    latencies: list[float] = []
    errors = 0
    counter = iter(range(10**12))
    clock = time.perf_counter
    deadline = clock() + seconds if seconds else math.inf
    limit = total if total is not None else math.inf

    async def worker() -> None:
        nonlocal errors
        conn = Conn(port)
        try:
            while True:
                i = next(counter)
                if i >= limit:
                    return
                start = clock()
                if start >= deadline:
                    return
                try:
                    status, _ = await call(conn, i)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    status = 0
                if status == expect:
                    latencies.append(clock() - start)
                else:
                    errors += 1
        finally:
            conn.close()

    start = clock()
    async with asyncio.timeout((seconds or 0) + 300):  # a stuck server must not hang the run
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, clock() - start, errors


# --- tokens and times ---------------------------------------------------------------------------
def forge_token(secret: str, sub: str, role: str, ttl: int = 3600) -> str:
    """An access token with the claims of a login, signed with the server's secret."""
    now = int(time.time())
    claims = {
        "iss": "healthmed", "aud": "healthmed-api", "sub": sub, "role": role,
        "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex,
    }  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
