"""Time off: ``POST/GET/DELETE /v1/me/time-off``.

A range of instants (at most 90 days) the doctor is away. Creating one:

1. reads the doctor's slots overlapping it from the store (the truth); confirmed appointments
   inside make the call Conflict ``confirmed_in_range`` (their ids under ``appointments``,
   nothing changed) unless ``cancel_confirmed`` with a justification;
2. stores the range, so slot creations from then on skip it (:func:`._rules.outside`);
3. refuses the requests inside, drops the pending moves into it, cancels (by the doctor, the
   patients told) the confirmed appointments inside when asked, then deletes every slot
   inside that is open by then, each through the ordinary decision and slot paths (so every
   event, e-mail and freed slot is what those paths do).

Each step is its own write: a failure midway (``Unavailable``) leaves the range stored and the
steps done so far done; repeating the call over the same range finishes the work (a second,
overlapping range is harmless). Deleting a range recreates nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import msgspec

from engine.booking import _store as st
from engine.booking._model import (
    JUSTIFICATION_MAX,
    JUSTIFICATION_MIN,
    REASON_MAX,
    TIME_OFF_MAX_DAYS,
    Slot,
    TimeOff,
    TimeOffBody,
    TimeOffView,
)
from engine.booking._rules import MAX_SLOT_MS
from engine.errors import Conflict, EngineError, Invalid, NotFound
from engine.store import Item
from engine.timeutil import new_id, parse_rfc3339

if TYPE_CHECKING:
    from engine.booking._context import BookingContext
    from engine.booking._decisions import Decisions
    from engine.booking._moves import Moves
    from engine.principal import Principal
    from engine.store import Store

log = logging.getLogger("healthmed.booking")


class SlotRemover(Protocol):
    """What time off uses of :class:`~engine.booking._slots.Slots` (which imports this module
    for :func:`time_off_ranges`, so it is not imported back)."""

    async def delete(self, principal: Principal, slot_id: str) -> None: ...


_DAY_MS = 86_400_000


def _doctor(principal: Principal) -> str:
    return principal.require("doctor").user_id


async def time_off_ranges(store: Store, doctor_id: str, now: int) -> list[tuple[int, int]]:
    """The doctor's time-off ranges not over yet, as (start, end) ms: what slot creation
    skips."""
    items = await store.query(st.doctor_pk(doctor_id), prefix=st.OFF_PREFIX)
    spans = [(int(i.data["start"]), int(i.data["end"])) for i in items]
    return [(a, b) for a, b in spans if b > now]


class TimeOffs:
    """A doctor's time-off ranges (see the module docstring)."""

    def __init__(
        self, ctx: BookingContext, slots: SlotRemover, decisions: Decisions, moves: Moves
    ) -> None:
        self.ctx = ctx
        self.slots = slots
        self.decisions = decisions
        self.moves = moves

    async def create(self, principal: Principal, body: TimeOffBody) -> TimeOffView:
        doctor_id = _doctor(principal)
        ctx = self.ctx
        start = parse_rfc3339(body.from_, field="from")
        end = parse_rfc3339(body.to, field="to")
        if end <= start:
            raise Invalid("to must be after from", code="invalid_range")
        if end - start > TIME_OFF_MAX_DAYS * _DAY_MS:
            raise Invalid(f"time off spans at most {TIME_OFF_MAX_DAYS} days", code="range_too_long")
        reason = (body.reason or "").strip() or None
        if reason is not None and len(reason) > REASON_MAX:
            raise Invalid(f"reason is at most {REASON_MAX} characters", code="invalid_reason")
        justification = (body.justification or "").strip()
        if (body.cancel_confirmed or body.justification is not None) and not (
            JUSTIFICATION_MIN <= len(justification) <= JUSTIFICATION_MAX
        ):
            raise Invalid(
                f"justification must be {JUSTIFICATION_MIN} to {JUSTIFICATION_MAX} characters",
                code="invalid_justification",
            )
        now = ctx.clock()
        inside = await self._slots_inside(doctor_id, start, end, now)
        confirmed = sorted({s.appointment_id for s in inside
                            if s.status == "booked" and s.appointment_id})  # fmt: skip
        if confirmed and not body.cancel_confirmed:
            raise Conflict(
                "confirmed appointments lie in the range: cancel them with it "
                "(cancel_confirmed and a justification) or choose another range",
                code="confirmed_in_range",
                appointments=confirmed,
            )
        off = TimeOff(
            id=new_id(), doctor_id=doctor_id, start=start, end=end, reason=reason,
            removed_slots=[], refused_requests=[], cancelled_appointments=[], created_at=now,
        )  # fmt: skip
        await ctx.store.put(self._item(off), "absent")
        refused: list[str] = []
        cancelled: list[str] = []
        for slot in inside:
            appt_id = slot.appointment_id
            if appt_id is None or slot.status == "open":
                continue
            try:
                if slot.status == "requested" and slot.move:
                    appt, version = await ctx.load_appointment(appt_id)
                    if appt.pending_move is not None and appt.pending_move.slot_id == slot.id:
                        await self.moves.drop(
                            appt, version, "appointment.move_refused", now, hand_over=False
                        )
                elif slot.status == "requested":
                    await self.decisions.refuse(
                        principal,
                        appt_id,
                        "O médico estará ausente nesse período.",
                        hand_over=False,
                    )
                    refused.append(appt_id)
                elif slot.status == "booked" and body.cancel_confirmed:
                    await self.decisions.cancel(principal, appt_id, justification, hand_over=False)
                    cancelled.append(appt_id)
            except Conflict:  # decided meanwhile: its slot is no longer this call's to free
                log.info("appointment %s changed during time off %s", appt_id, off.id)
        removed: list[str] = []
        for slot in await self._slots_inside(doctor_id, start, end, now):
            if slot.status != "open":
                continue
            try:
                await self.slots.delete(principal, slot.id)
            except EngineError as exc:
                if not isinstance(exc, (Conflict, NotFound)):
                    raise
                continue
            removed.append(slot.id)
        done = msgspec.structs.replace(
            off, removed_slots=removed, refused_requests=refused, cancelled_appointments=cancelled
        )
        await ctx.store.put(self._item(done))
        return done.view()

    async def _slots_inside(self, doctor_id: str, start: int, end: int, now: int) -> list[Slot]:
        """The doctor's stored slots overlapping ``[start, end)`` that have not ended."""
        items = await self.ctx.store.query(
            st.doctor_pk(doctor_id), prefix="SLOT#",
            start=st.slot_sk(max(0, start - MAX_SLOT_MS), ""), end=st.slot_sk(end, ""),
        )  # fmt: skip
        slots = [Slot.from_data(i.data) for i in items]
        return [s for s in slots if s.start < end and start < s.end and s.end > now]

    async def list(self, principal: Principal) -> list[TimeOffView]:
        doctor_id = _doctor(principal)
        items = await self.ctx.store.query(st.doctor_pk(doctor_id), prefix=st.OFF_PREFIX)
        return [TimeOff.from_data(i.data).view() for i in items]

    async def delete(self, principal: Principal, time_off_id: str) -> None:
        """Remove a range (NotFound ``time_off_not_found`` for an unknown or another doctor's
        id); nothing it removed is recreated."""
        doctor_id = _doctor(principal)
        items = await self.ctx.store.query(st.doctor_pk(doctor_id), prefix=st.OFF_PREFIX)
        for item in items:
            if item.data.get("id") == time_off_id:
                await self.ctx.store.delete(item.pk, item.sk, "present")
                return
        raise NotFound("time off not found", code="time_off_not_found")

    @staticmethod
    def _item(off: TimeOff) -> Item:
        return Item(
            pk=st.doctor_pk(off.doctor_id), sk=st.off_sk(off.start, off.id), data=off.to_data()
        )
