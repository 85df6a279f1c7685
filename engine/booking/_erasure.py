"""Erasing a user (LGPD): their active appointments cancelled, a doctor's open slots removed,
a patient's rating comments dropped."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from engine.booking import _store as layout
from engine.booking._context import redis_guard
from engine.booking._model import ACTIVE
from engine.errors import REFUSALS, Conflict, EngineError, NotFound

if TYPE_CHECKING:
    from engine.booking._appointments import Appointments
    from engine.booking._context import BookingContext
    from engine.booking._decisions import Decisions
    from engine.booking._slots import Slots
    from engine.principal import Principal

ERASED_JUSTIFICATION = "The account was erased at its owner's request (LGPD)."
_FAR_FUTURE_MS = 10 * 366 * 86_400_000


class Erasure:
    """Booking's part of erasing an account."""

    def __init__(
        self,
        ctx: BookingContext,
        appointments: Appointments,
        decisions: Decisions,
        slots: Slots,
    ) -> None:
        self.ctx = ctx
        self.appointments = appointments
        self.decisions = decisions
        self.slots = slots

    @redis_guard
    async def erase_user(self, principal: Principal) -> None:
        """Cancel the user's active appointments that have not ended (by that party, the other
        one is notified), remove a doctor's open slots, drop rating comments. Idempotent."""
        ctx = self.ctx
        now = ctx.clock()
        for stale in await self.appointments.all_of(principal.user_id):
            if stale.status in ACTIVE and stale.end > now:
                try:
                    appt, version = await ctx.load_appointment(stale.id)
                    await self.decisions.cancel_by(
                        appt, version, principal.role, ERASED_JUSTIFICATION, principal.user_id
                    )
                except (Conflict, NotFound):
                    pass
            if principal.role == "patient" and stale.status == "confirmed":
                rating = await ctx.store.get(layout.appt_pk(stale.id), layout.RATING_SK)
                if rating is not None and rating.data.get("comment"):
                    data = {**rating.data, "comment": None}
                    await ctx.store.put(msgspec.structs.replace(rating, data=data))
        if principal.role == "doctor":
            for slot in await self.slots.read(principal.user_id, now, now + _FAR_FUTURE_MS):
                if slot.status == "open":
                    try:
                        await self.slots.delete(principal, slot.id)
                    except EngineError as exc:
                        if not isinstance(exc, REFUSALS):
                            raise
