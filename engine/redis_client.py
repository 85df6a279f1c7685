"""The Redis connection: a real server from ``HEALTHMED_REDIS_URL``, or in-process fakeredis.

Connection policy (:func:`connection_options`, for every client the engine opens):

* **No command is ever repeated by the client.** redis-py's retries resend a command after an
  error on its reply, when it may have landed: a reservation or a ``SET NX`` would run twice.
  So its retries are off; the booking scripts are idempotent by appointment id and the engine
  repeats them itself where that is safe.
* **A connection that died is never handed to a request.** When Redis dies, every pooled
  connection is closed by the peer. The pool's check on checkout (data or end-of-file already
  on the socket: reconnect first, before the command is sent) finds those; redis-py 8 skips
  that check while maintenance notifications are enabled (their default is "auto", for
  Redis Enterprise), so they are switched off here. A connection idle for longer than
  ``HEALTH_CHECK_SECONDS`` is also pinged before its command; if the ping fails (a peer that
  vanished without closing, e.g. behind a network partition) the connection is reopened once
  and only then the command sent: the command itself had not been sent, so nothing repeats.
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

HEALTH_CHECK_SECONDS = 10
"""A connection idle this long is pinged before its next command."""


class CheckedConnection(Connection):
    """A connection whose failed health check reopens it (once) instead of failing the command
    that was about to be sent on it."""

    async def check_health(self) -> None:
        try:
            await super().check_health()  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await self.disconnect()
            await self.connect()  # type: ignore[no-untyped-call]


def connection_options() -> dict[str, Any]:
    """Keyword arguments of every Redis client (see the module docstring): no client retries,
    dead connections replaced before use, bounded timeouts and pool."""
    return {
        "retry": Retry(NoBackoff(), 0),
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
        "health_check_interval": HEALTH_CHECK_SECONDS,
        "max_connections": 512,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }


def connect_redis(url: str | None, *, cluster: bool = False) -> Redis:
    """A client of ``url``; with ``cluster``, redis-py's asyncio ``RedisCluster`` seeded by that
    one node (``HEALTHMED_REDIS_CLUSTER``). Typed as ``Redis``: the engine only calls what both
    share (commands, scripts, pipelines without transactions, pub/sub).

    On a cluster the same policy holds (no client retries): a command that fails with a
    connection error makes the client rediscover the topology on its next call (a failed-over
    master's replica is found then), and the caller decides whether to repeat. Redirections
    (MOVED, ASK) are followed by the client: the command did not run on the node that
    redirected.
    """
    if url and cluster:
        return cast("Redis", _Cluster.from_url(url, **connection_options()))
    if url:
        return Redis.from_url(url, connection_class=CheckedConnection, **connection_options())
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7,)))


_TORN_DOWN = (AttributeError, RuntimeError)
"""What redis-py 8.1 raises when a node's connection is closed under a command in flight: its
stream writer already gone (AttributeError), or uvloop's closed transport (RuntimeError)."""


def _torn_down(exc: Exception) -> RedisConnectionError:
    return RedisConnectionError(f"cluster connection closed while in use ({exc})")


class _ClusterPipeline(ClusterPipeline):
    """redis-py 8.1's cluster pipeline, whose connection race is reported as what it is.

    When a failover closes a node's connection while a pipeline is (re)connecting or writing
    on it, redis-py lets ``_TORN_DOWN`` errors out instead of a ``ConnectionError``; seen in
    ``tests/e2e/test_failover.py``. Reported as a connection error it becomes an ``Unavailable``
    like any other Redis failure, and the client relearns the slots.
    """

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except _TORN_DOWN as exc:
            self.cluster_client._initialize = True
            raise _torn_down(exc) from exc


class _Cluster(RedisCluster):
    """``RedisCluster`` with the same correction on single commands and its pipelines."""

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # raises, as redis-py does
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py does

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except _TORN_DOWN as exc:
            self._initialize = True
            raise _torn_down(exc) from exc
