"""Test helpers shared by every tier: free ports, one timeout factor, process launchers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
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
            raise RuntimeError("redis-server is not installed (.ci/system-deps installs it)")
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
        # No SIGTERM drain unless a test asks for one: every stop would wait 5 s otherwise.
        env = {**os.environ, "HEALTHMED_DRAIN_SECONDS": "0", **self.env}
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
            wait_until(ready, 90, "the healthmed server")
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


def _free_cluster_port(taken: list[int]) -> int:
    """A free port whose cluster bus port (+10000) is free too, as Redis Cluster needs."""
    while True:
        port = free_port()
        if port > 55535 or port in taken or port + 10000 in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@dataclass
class RedisClusterNodes:
    """A private Redis Cluster: 3 masters and 3 replicas from ``redis-server`` on free ports.

    Built with ``redis-cli --cluster create``; ``cluster-node-timeout`` is small so that a
    killed master is failed over by its replica within a few seconds. Nothing persisted.
    """

    ports: list[int]
    procs: dict[int, subprocess.Popen[bytes]]
    workdir: Path
    node_timeout_ms: int = 1000

    @property
    def url(self) -> str:
        """One seed node, as ``HEALTHMED_REDIS_URL`` takes it with HEALTHMED_REDIS_CLUSTER."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    @classmethod
    def start(cls, node_timeout_ms: int = 1000) -> RedisClusterNodes:
        binary = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if binary is None or cli is None:
            raise RuntimeError(
                "redis-server and redis-cli are missing (.ci/system-deps installs them)"
            )
        # Its own temporary directory, not pytest's: pytest prunes old base directories of
        # other runs on this machine, which would pull the nodes' files from under them.
        workdir = Path(tempfile.mkdtemp(prefix="healthmed-cluster-"))
        nodes = cls(ports=[], procs={}, workdir=workdir, node_timeout_ms=node_timeout_ms)
        try:
            for _ in range(6):
                port = _free_cluster_port(nodes.ports)
                nodes.ports.append(port)
                nodes._spawn(port)
            for port in nodes.ports:
                wait_until(lambda p=port: nodes.ping(p), 10, f"cluster node {port}")
            nodes._create(cli)
        except BaseException:
            nodes.stop()
            raise
        return nodes

    def _create(self, cli: str) -> None:
        nodes = self
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in nodes.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout(60),
        )
        nodes.wait_healthy(60)

    def _spawn(self, port: int) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [
                binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(node_dir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--save", "",
                "--appendonly", "no",
                "--maxclients", "10000",
                "--loglevel", "warning",
                "--logfile", str(node_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def command(self, port: int, *args: str) -> str:
        cli = shutil.which("redis-cli")
        assert cli is not None
        done = subprocess.run(
            [cli, "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=timeout(10),
            check=False,
        )
        return done.stdout

    def ping(self, port: int) -> bool:
        return self.command(port, "PING").strip() == "PONG"

    def live_ports(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def masters(self) -> list[int]:
        """Ports of the live nodes that are masters with slots."""
        out = []
        for port in self.live_ports():
            for line in self.command(port, "CLUSTER", "NODES").splitlines():
                fields = line.split()
                if "myself" in fields[2] and "master" in fields[2] and len(fields) > 8:
                    out.append(port)
        return out

    def wait_healthy(self, seconds: float) -> None:
        """Every live node says ``cluster_state:ok`` and three masters serve the slots."""

        def healthy() -> bool:
            for port in self.live_ports():
                if "cluster_state:ok" not in self.command(port, "CLUSTER", "INFO"):
                    return False
            return len(self.masters()) == 3

        wait_until(healthy, seconds, "a healthy redis cluster")

    def kill_master(self, port: int) -> None:
        """``kill -9`` one master (its replica takes over after the node timeout)."""
        self.procs[port].kill()
        self.procs[port].wait()

    def flushall(self) -> None:
        for port in self.masters():
            self.command(port, "FLUSHALL")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout(5))
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
