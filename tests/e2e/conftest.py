"""End-to-end fixtures: the real server process, driven over HTTP and websockets.

``server`` is one process per test module on its own real redis-server and data directory;
``start_server`` starts more (a second replica, another configuration) and stops them after the
test. Tests that need isolation create their own accounts (``unique`` gives fresh numbers).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support import RedisClusterNodes, RedisServer, ServerProcess, free_port

_counter = itertools.count(random.randrange(10_000, 90_000) * 1000)


@pytest.fixture
def unique() -> Callable[[], int]:
    """Fresh integers for CRM numbers, e-mails and CPFs that never repeat within a run."""
    return lambda: next(_counter)


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    """A private redis-server for one test module's server(s)."""
    redis = RedisServer.start()
    yield redis
    redis.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with ``REDIS_BACKENDS = ("redis", "cluster")`` runs its ``server`` tests on one
    redis-server and again on the run's real Redis Cluster (``id="cluster"``)."""
    backends = getattr(metafunc.module, "REDIS_BACKENDS", None)
    if backends and "e2e_redis" in metafunc.fixturenames:
        metafunc.parametrize("e2e_redis", backends, indirect=True, scope="module", ids=backends)


@pytest.fixture(scope="module")
def e2e_redis(request: pytest.FixtureRequest) -> str:
    """Which Redis the module's server uses: ``redis`` (its own server) or ``cluster``."""
    return str(getattr(request, "param", "redis"))


@pytest.fixture(scope="module")
def redis_env(e2e_redis: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The server's Redis settings for the module's backend."""
    if e2e_redis == "cluster":
        nodes: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        return {"HEALTHMED_REDIS_URL": nodes.url, "HEALTHMED_REDIS_CLUSTER": "true"}
    module_redis: RedisServer = request.getfixturevalue("module_redis")
    return {"HEALTHMED_REDIS_URL": module_redis.url}


@pytest.fixture(scope="module")
def flush_redis(e2e_redis: str, request: pytest.FixtureRequest) -> Callable[[], None]:
    """FLUSHALL on the module's Redis (every master of a cluster)."""
    if e2e_redis == "cluster":
        nodes: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        return nodes.flushall
    module_redis: RedisServer = request.getfixturevalue("module_redis")

    def flush() -> None:
        client = redis.Redis.from_url(module_redis.url)
        client.flushall()
        client.close()

    return flush


@pytest.fixture(scope="module")
def server(
    redis_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        port=free_port(),
        data_dir=Path(tmp_path_factory.mktemp("server")),
        env={**redis_env, "HEALTHMED_ENV": "test"},
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def start_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, **env: str) -> ServerProcess:
        proc = ServerProcess(
            port=free_port(),
            data_dir=data_dir or Path(tmp_path_factory.mktemp("server")),
            env=env,
        ).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
