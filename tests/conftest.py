"""Fixtures for every tier: a private redis-server per run, a private Redis Cluster (started
the first time a test asks for it) and moto's server over HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import RedisClusterNodes, RedisServer, free_port


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server of this test run, on its own free port."""
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """A real Redis Cluster of this test run: 3 masters and 3 replicas on free ports.

    Tests that kill nodes start their own (tests/e2e/test_failover.py); this one stays whole.
    """
    nodes = RedisClusterNodes.start()
    yield nodes
    nodes.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode: DynamoDB, S3 and KMS over real HTTP on a free port."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
