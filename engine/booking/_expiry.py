"""The expiry sweep: undecided requests expire at their decision deadline (in every replica).

Finding due requests is cheap. Each doctor's undecided requests sit in a deadline sorted set
under the doctor's tag; a global sorted set (``keys.sweep_index``) holds each doctor with
pending requests, scored by their earliest deadline. A sweep reads the doctors due now from
the global set, claims their due requests with ``sweep.lua`` (a lease, so no other replica
takes them), expires each one (store first, conditioned on its version, so never twice), then
resets the doctor's score from its deadline set and re-reads that set once more, lowering the
score if a request arrived meanwhile (a reservation adds its doctor with ``ZADD LT`` after its
script), so no deadline is forgotten. A process killed in the one round trip between a
reservation's script and that ``ZADD`` would leave a request the index does not know; so every
replica also re-indexes every doctor's earliest deadline when its sweep starts and every
``REINDEX_SECONDS`` after (:meth:`Expiry.reindex`): such a request is expired at most that late.

(Not to be confused with the websocket idle sweeper of :mod:`gateway.realtime`.)
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from engine import keys
from engine.booking._moves import appointment_of_holder
from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.booking._context import BookingContext
    from engine.booking._decisions import Decisions
    from engine.booking._moves import Moves

log = logging.getLogger("healthmed.booking")

SWEEP_LEASE_MS = 30_000
"""How long a sweep's claim on an expired request hides it from other replicas' sweeps."""
REINDEX_SECONDS = 300.0
"""How often (jittered +-25%) each replica re-indexes every doctor's earliest deadline."""
_REINDEX_BATCH = 500


class Expiry:
    """Expires undecided requests, and lapses undecided moves, at their deadline."""

    def __init__(self, ctx: BookingContext, decisions: Decisions, moves: Moves) -> None:
        self.ctx = ctx
        self.decisions = decisions
        self.moves = moves

    async def reindex(self) -> int:
        """Put every doctor with undecided requests in the sweep index at its earliest deadline
        (``ZADD LT``: never delays an entry). The number of doctors with requests."""
        redis = self.ctx.redis
        ids = await self.ctx.rebuild.doctor_ids()
        found = 0
        for at in range(0, len(ids), _REINDEX_BATCH):
            batch = ids[at : at + _REINDEX_BATCH]
            async with redis.pipeline(transaction=False) as pipe:
                for doctor_id in batch:
                    pipe.zrange(keys.doctor_deadlines(doctor_id), 0, 0, withscores=True)
                firsts = await pipe.execute()
            earliest = {d: first[0][1] for d, first in zip(batch, firsts, strict=True) if first}
            if earliest:
                await redis.zadd(keys.sweep_index(), earliest, lt=True)
                found += len(earliest)
        return found

    async def sweep_once(self, *, max_doctors: int = 100, max_items: int = 50) -> int:
        """Expire every due request of up to ``max_doctors`` doctors; the number expired."""
        ctx = self.ctx
        redis = ctx.redis
        now = ctx.clock()
        due = await redis.zrangebyscore(keys.sweep_index(), "-inf", now, 0, max_doctors)
        expired = 0
        for raw in due:
            doctor_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            deadlines = keys.doctor_deadlines(doctor_id)
            swept = await ctx.doctor_eval(
                ctx.scripts.sweep,
                doctor_id,
                [deadlines, keys.doctor_pending(doctor_id), keys.doctor_hydrated(doctor_id)],
                [now, SWEEP_LEASE_MS, max_items],
            )
            for appointment_id, slot_id in swept.claimed:
                try:
                    if await self._expire_one(appointment_id, slot_id, now):
                        expired += 1
                except EngineError:
                    log.warning("expiry of %s failed; retried after the lease", appointment_id)
            first = await redis.zrange(deadlines, 0, 0, withscores=True)
            if first:
                await redis.zadd(keys.sweep_index(), {doctor_id: first[0][1]})
            else:
                await redis.zrem(keys.sweep_index(), doctor_id)
            again = await redis.zrange(deadlines, 0, 0, withscores=True)
            if again:
                await redis.zadd(keys.sweep_index(), {doctor_id: again[0][1]}, lt=True)
        return expired

    async def _expire_one(self, claimed: str, slot_id: str, now: int) -> bool:
        """A request expires; a move holder (a confirmed appointment's pending move) lapses,
        or, unknown to the store, is released as a ghost reservation like any other."""
        if appointment_of_holder(claimed) is not None:
            lapsed = await self.moves.lapse(claimed, slot_id, now)
            if lapsed is not None:
                return lapsed
        return await self.decisions.expire(claimed, slot_id, now)

    async def run(self) -> None:
        """Sweep every ``sweep_interval_seconds`` until cancelled; re-index at start and
        every ``REINDEX_SECONDS``."""
        loop = asyncio.get_running_loop()
        reindex_at = loop.time()
        while True:
            try:
                if loop.time() >= reindex_at:
                    reindex_at = loop.time() + REINDEX_SECONDS * (0.75 + random.random() / 2)  # noqa: S311
                    await self.reindex()
                while await self.sweep_once() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("expiry sweep failed", exc_info=True)
            await asyncio.sleep(self.ctx.settings.sweep_interval_seconds)
