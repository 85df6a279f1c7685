"""Fixed-window counters in Redis for the generous per-address and per-account limits
(registration, reset e-mails): ``INCR`` then ``EXPIRE ... NX`` in one ``MULTI``, so a window
starts with its first event and no counter is left without an expiry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from engine.errors import Unavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis


async def count(redis: Redis, key: str, window_seconds: int) -> tuple[int, int]:
    """Count one event in ``key``'s window: (events in the window so far, seconds left)."""
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_seconds, nx=True)
            pipe.ttl(key)
            events, _, ttl = await pipe.execute()
    except RedisError as exc:
        raise Unavailable("redis does not answer", code="redis_unavailable") from exc
    return int(events), max(1, int(ttl))
