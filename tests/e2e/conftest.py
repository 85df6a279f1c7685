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

from tests.support import RedisServer, ServerProcess, free_port

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


@pytest.fixture(scope="module")
def server(
    module_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        port=free_port(),
        data_dir=Path(tmp_path_factory.mktemp("server")),
        env={"HEALTHMED_REDIS_URL": module_redis.url, "HEALTHMED_ENV": "test"},
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
