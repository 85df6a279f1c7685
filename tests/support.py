"""Test helpers shared by every tier: free ports, one timeout factor, process launchers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

TIMEOUT_FACTOR = float(os.environ.get("HEALTHMED_TEST_TIMEOUT_FACTOR", "1"))
"""Every timeout in the suite is multiplied by this, so a slow machine does not flake."""


def timeout(seconds: float) -> float:
    return seconds * TIMEOUT_FACTOR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + timeout(seconds)
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


@dataclass
class RedisServer:
    """A private ``redis-server`` on a free port, nothing persisted."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, port: int | None = None) -> RedisServer:
        """Start one on ``port`` (default: a free one)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        port = port or free_port()
        proc = subprocess.Popen(
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
                "--maxclients",
                "20000",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(port=port, proc=proc)

        def up() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        wait_until(up, 10, "redis-server")
        return server

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout(5))
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def kill(self) -> None:
        """``kill -9``: the server dies at once, every connection to it drops."""
        self.proc.kill()
        self.proc.wait(timeout(5))

    def restart_empty(self) -> None:
        """Kill it and start a new, empty one on the same port (a Redis lost and replaced)."""
        self.kill()
        self.proc = RedisServer.start(self.port).proc


@dataclass
class ServerProcess:
    """The real healthmed server, started the way ``make run`` starts it."""

    port: int
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        env.update(
            HEALTHMED_PORT=str(self.port),
            HEALTHMED_HOST="127.0.0.1",
            HEALTHMED_DATA_DIR=str(self.data_dir),
        )
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()[-3000:]}")
            return httpx.get(self.url + "/health/ready", timeout=1).status_code == 200

        try:
            wait_until(ready, 30, "the healthmed server")
        except RuntimeError:
            raise
        except TimeoutError:
            self.stop()
            raise TimeoutError(f"server not ready:\n{self.log_path.read_text()[-3000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def private_server(data_dir: Path, **env: str) -> Iterator[ServerProcess]:
    """The real server on its own private redis-server, both stopped on exit."""
    redis = RedisServer.start()
    proc = ServerProcess(
        port=free_port(),
        data_dir=data_dir,
        env={"HEALTHMED_REDIS_URL": redis.url, "HEALTHMED_ENV": "test", **env},
    )
    try:
        yield proc.start()
    finally:
        proc.stop()
        redis.stop()
