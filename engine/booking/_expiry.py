"""The expiry sweep: undecided requests expire at their decision deadline (in every replica).

Finding due requests is cheap. Each doctor's undecided requests sit in a deadline sorted set
under the doctor's tag; a global sorted set (``keys.sweep_index``) holds each doctor with
pending requests, scored by their earliest deadline. A sweep reads the doctors due now from the
global set, claims their due requests with ``engine/sweep.lua`` (a lease, so no other replica
takes them), expires each one (store first, conditioned on its version, so never twice), then
resets the doctor's score from its deadline set and re-reads that set once more, lowering the
score if a request arrived meanwhile (a reservation adds its doctor with ``ZADD LT`` after its
script), so no deadline is forgotten (the waitlist's lapse sweep shares these steps:
:class:`engine.sweep_index.SweepIndex`). A process killed in the one round trip between a
reservation's script and that ``ZADD`` would leave a request the index does not know; so every
replica also re-indexes every doctor's earliest deadline when its sweep starts and every
``REINDEX_SECONDS`` after (:meth:`Expiry.reindex`): such a request is expired at most that
late.

(Not to be confused with the websocket idle sweeper of :mod:`gateway.realtime`.)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine import keys
from engine.booking._moves import appointment_of_holder
from engine.errors import EngineError
from engine.sweep_index import SweepIndex

if TYPE_CHECKING:
    from engine.booking._context import BookingContext
    from engine.booking._decisions import Decisions
    from engine.booking._moves import Moves

log = logging.getLogger("healthmed.booking")

SWEEP_LEASE_MS = 30_000
"""How long a sweep's claim on an expired request hides it from other replicas' sweeps."""


class Expiry:
    """Expires undecided requests, and lapses undecided moves, at their deadline."""

    def __init__(self, ctx: BookingContext, decisions: Decisions, moves: Moves) -> None:
        self.ctx = ctx
        self.decisions = decisions
        self.moves = moves
        self.index = SweepIndex(ctx.redis, keys.sweep_index(), keys.doctor_deadlines)

    async def reindex(self) -> int:
        """Put every doctor with undecided requests in the sweep index at its earliest deadline
        (``ZADD LT``: never delays an entry). The number of doctors with requests."""
        return await self.index.reindex(await self.ctx.rebuild.doctor_ids())

    async def sweep_once(self, *, max_doctors: int = 100, max_items: int = 50) -> int:
        """Expire every due request of up to ``max_doctors`` doctors; the number expired."""
        ctx = self.ctx
        now = ctx.clock()
        expired = 0
        for doctor_id in await self.index.due(now, max_doctors):
            swept = await ctx.doctor_eval(
                ctx.scripts.sweep,
                doctor_id,
                [
                    keys.doctor_deadlines(doctor_id),
                    keys.doctor_pending(doctor_id),
                    keys.doctor_hydrated(doctor_id),
                ],
                [now, SWEEP_LEASE_MS, max_items, ""],
            )
            for appointment_id, slot_id in swept.claimed:
                try:
                    if await self._expire_one(appointment_id, slot_id, now):
                        expired += 1
                except EngineError:
                    log.warning("expiry of %s failed; retried after the lease", appointment_id)
            await self.index.reset(doctor_id)
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
        every ``REINDEX_SECONDS`` (:meth:`engine.sweep_index.SweepIndex.run`)."""
        await self.index.run(
            self.sweep_once,
            self.ctx.rebuild.doctor_ids,
            self.ctx.settings.sweep_interval_seconds,
            log,
        )
