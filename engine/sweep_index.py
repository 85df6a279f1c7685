"""The global index a sweep finds its due doctors in, and the script that claims a doctor's
due items (``sweep.lua`` beside this module): booking's expiry sweep (decision deadlines) and
the waitlist's lapse sweep (hold expiries) work the same way.

Each doctor's due items sit in a sorted set under the doctor's tag (item -> due time, ms); the
index, one sorted set without a tag (plain commands only), holds each doctor with items scored
by its earliest. Whoever adds an item indexes its doctor with ``ZADD LT`` after its script, so
a score is never delayed. After sweeping a doctor, :meth:`SweepIndex.reset` sets its score from
its sorted set and re-reads that set once more, lowering the score if an item arrived
meanwhile: no item is forgotten. An item whose ``ZADD`` a crash lost is found by
:meth:`SweepIndex.reindex`, which every replica's :meth:`SweepIndex.run` calls at start and
every ``REINDEX_SECONDS``: such an item is swept at most that late.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from engine.lua import Reply, Script, load

if TYPE_CHECKING:
    import logging
    from collections.abc import Awaitable, Callable, Sequence

    from redis.asyncio import Redis

REINDEX_SECONDS = 300.0
"""How often (jittered +-25%) each replica re-indexes every doctor's earliest item."""
_REINDEX_BATCH = 500


class SweepReply(Reply, array_like=True, frozen=True):
    claimed: list[tuple[str, str]] = []
    """(item, slot id) of each due item claimed (``""`` where the hash maps none)."""


def sweep_script(redis: Redis) -> Script[SweepReply]:
    """``sweep.lua`` registered on ``redis``. KEYS: the doctor's items sorted set, the hash of
    item -> slot id, the hydrated marker; ARGV: now, lease (ms), max items, ``"drop"`` or
    ``""``."""
    return load(redis, "engine", "sweep", SweepReply)


class SweepIndex:
    """One sweep's index: ``index`` the global sorted set, ``items_of`` the key of a doctor's
    sorted set of due items."""

    __slots__ = ("index", "items_of", "redis")

    def __init__(self, redis: Redis, index: str, items_of: Callable[[str], str]) -> None:
        self.redis = redis
        self.index = index
        self.items_of = items_of

    async def due(self, now: int, limit: int) -> list[str]:
        """Up to ``limit`` doctors whose earliest item is due at ``now`` (ms)."""
        raw = await self.redis.zrangebyscore(self.index, "-inf", now, 0, limit)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]

    async def reset(self, doctor_id: str) -> None:
        """After a sweep of the doctor: its score becomes its earliest item's (or it leaves the
        index), then is lowered if an item arrived meanwhile."""
        items = self.items_of(doctor_id)
        first = await self.redis.zrange(items, 0, 0, withscores=True)
        if first:
            await self.redis.zadd(self.index, {doctor_id: first[0][1]})
        else:
            await self.redis.zrem(self.index, doctor_id)
        again = await self.redis.zrange(items, 0, 0, withscores=True)
        if again:
            await self.redis.zadd(self.index, {doctor_id: again[0][1]}, lt=True)

    async def reindex(self, doctor_ids: Sequence[str]) -> int:
        """Put every doctor of ``doctor_ids`` with items in the index at its earliest item
        (``ZADD LT``: never delays a score). The number of doctors with items."""
        found = 0
        for at in range(0, len(doctor_ids), _REINDEX_BATCH):
            batch = doctor_ids[at : at + _REINDEX_BATCH]
            async with self.redis.pipeline(transaction=False) as pipe:
                for doctor_id in batch:
                    pipe.zrange(self.items_of(doctor_id), 0, 0, withscores=True)
                firsts = await pipe.execute()
            earliest = {d: first[0][1] for d, first in zip(batch, firsts, strict=True) if first}
            if earliest:
                await self.redis.zadd(self.index, earliest, lt=True)
                found += len(earliest)
        return found

    async def run(
        self,
        sweep_once: Callable[[], Awaitable[int]],
        doctor_ids: Callable[[], Awaitable[Sequence[str]]],
        interval: float,
        log: logging.Logger,
    ) -> None:
        """Sweep (``sweep_once`` until it finds nothing) every ``interval`` seconds until
        cancelled; re-index ``doctor_ids()`` at start and every ``REINDEX_SECONDS``. A failed
        round is logged and tried again at the next interval."""
        loop = asyncio.get_running_loop()
        reindex_at = loop.time()
        while True:
            try:
                if loop.time() >= reindex_at:
                    reindex_at = loop.time() + REINDEX_SECONDS * (0.75 + random.random() / 2)  # noqa: S311
                    await self.reindex(await doctor_ids())
                while await sweep_once() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("sweep of %s failed", self.index, exc_info=True)
            await asyncio.sleep(interval)
