"""The Redis connection policy on real redis-servers: connections that died with their server
are replaced before use, and a failed health check reopens the connection without sending its
command twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.redis_client import CheckedConnection, connect_redis
from tests.support import RedisServer


@pytest.fixture
def killable() -> Iterator[RedisServer]:
    server = RedisServer.start()
    yield server
    server.stop()


async def test_a_pool_survives_its_server_being_killed_and_replaced(
    killable: RedisServer,
) -> None:
    """64 pooled connections, then the server is killed (-9) and restarted empty on the same
    port: a burst of 200 commands right after all succeed, none on a dead connection."""
    client = connect_redis(killable.url)
    try:
        await asyncio.gather(*(client.blpop(["nothing"], 0.2) for _ in range(64)))
        assert len(client.connection_pool._available_connections) == 64  # type: ignore[attr-defined]
        killable.restart_empty()
        await asyncio.sleep(0.2)  # the peers' close reaches the pooled sockets
        results = await asyncio.gather(
            *(client.incr("burst") for _ in range(200)), return_exceptions=True
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert int(await client.get("burst")) == 200
    finally:
        await client.aclose()


async def test_a_failed_health_check_reopens_the_connection_and_sends_the_command_once(
    killable: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ping before an idle connection's command fails: the connection is reopened, the
    command is then sent once (INCR answers 1), and no error reaches the caller."""
    client = connect_redis(killable.url)
    try:
        await client.ping()
        pings: list[int] = []
        real = CheckedConnection._send_ping

        async def failing_once(self: Any) -> None:
            pings.append(1)
            if len(pings) == 1:
                raise RedisConnectionError("peer vanished")
            await real(self)

        monkeypatch.setattr(CheckedConnection, "_send_ping", failing_once)
        (connection,) = client.connection_pool._available_connections  # type: ignore[attr-defined]
        connection.next_health_check = -1  # idle past the interval
        assert await client.incr("once") == 1
        assert len(pings) == 2  # the failed ping, then the reopened connection's
        assert int(await client.get("once")) == 1
    finally:
        await client.aclose()
