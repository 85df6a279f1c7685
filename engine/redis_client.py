"""The Redis connection: a real server from ``HEALTHMED_REDIS_URL``, or in-process fakeredis.

redis-py retries failed commands by default. A retried command whose first attempt did land
would run twice, so retries are switched off here: the booking scripts are idempotent by
appointment id and the engine retries them itself where a repeat is safe.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def connect_redis(url: str | None) -> Redis:
    if url:
        return Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
            max_connections=512,
        )
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7,)))
