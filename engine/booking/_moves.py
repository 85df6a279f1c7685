"""Rescheduling: ``POST /v1/appointments/{id}/reschedule`` and the doctor's decision on a move.

A move never lets the old slot go before the new one is taken:

1. ``reserve.lua`` takes the new slot for the **move holder** ``<appointment id>~m``
   (:func:`~engine.booking._model.move_holder`): the ordinary reservation script, untouched, so
   exactly one of a move and N racing patients wins the slot; ``claim.lua`` then checks the
   patient's overlap under the same holder id (a doctor's slots never overlap one another, so
   the old slot never blocks the new).
2. The store records the move in one transaction conditioned on the appointment's version,
   with the new slot's ``HOLD`` guard created ``absent`` (no slot ever has two active
   appointments in the store either). If it fails, the new slot is released (reopen.lua under
   the holder id) and nothing changed: ``Unavailable`` for a failing store, ``Conflict``
   ``invalid_transition`` when the appointment changed meanwhile (the doctor accepted first).
3. A request moves at once: ``move.lua`` passes the new slot from the holder to the
   appointment and lets the old slot go in one atomic step. A confirmed appointment keeps its
   slot and meeting: the store holds ``pending_move`` and the new slot stays with the holder
   until the doctor accepts (``move.lua``, the same step), refuses or lets it lapse (the new
   slot is freed like any other, through ``_reopen``).

A crash at any point leaves the old booking (steps 1-2: the holder's reservation is a ghost
the sweeper releases at its deadline) or the new one (after 2: the store is the truth; Redis
is rebuilt from it, where a pending move's slot is held by the holder again). Lapsing: the
holder sits in the doctor's deadline set like a request, so the expiry sweeper claims it at
the move's deadline and calls :meth:`Moves.lapse`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import RedisError

from engine import keys
from engine.booking import _store as st
from engine.booking._context import (
    DECISION_LEAD_MS,
    doctor_of_slot,
    hold_keys,
    slot_not_found,
    transition_error,
)
from engine.booking._model import (
    ACTIVE,
    MOVE_SUFFIX,
    Appointment,
    AppointmentView,
    MoveDoc,
    Slot,
    move_holder,
)
from engine.errors import Conflict, Invalid, NotFound
from engine.realtime import events
from engine.store import ConditionFailed, Put

if TYPE_CHECKING:
    from engine.booking._context import BookingContext
    from engine.booking._reserve import Reservations
    from engine.booking._views import Views
    from engine.principal import Principal
    from engine.store import Op

log = logging.getLogger("healthmed.booking")


def appointment_of_holder(holder: str) -> str | None:
    """The appointment id of a move holder id, None for any other id."""
    return holder.removesuffix(MOVE_SUFFIX) if holder.endswith(MOVE_SUFFIX) else None


class Moves:
    """Reschedule, and apply / drop / lapse a pending move (see the module docstring)."""

    def __init__(self, ctx: BookingContext, views: Views, reservations: Reservations) -> None:
        self.ctx = ctx
        self.views = views
        self.reservations = reservations

    # --- the patient asks ---------------------------------------------------------------------
    async def reschedule(
        self, principal: Principal, appointment_id: str, slot_id: str
    ) -> AppointmentView:
        """Move the calling patient's appointment to ``slot_id`` (another open slot of the same
        doctor). Invalid ``other_doctor`` / ``slot_in_past``; NotFound for an unknown slot or
        someone else's appointment; Conflict ``slot_unavailable``, ``patient_overlap``,
        ``invalid_transition`` (not requested/confirmed, already moving, or changed meanwhile).
        """
        ctx = self.ctx
        appt, version = await ctx.own_as(principal, appointment_id, "patient")
        if doctor_of_slot(slot_id) != appt.doctor_id:
            raise Invalid(
                "the slot belongs to another doctor: book it instead", code="other_doctor"
            )
        now = ctx.clock()
        if appt.status not in ACTIVE or appt.end <= now:
            raise transition_error(f"the appointment is {appt.status}")
        if appt.status == "requested" and now >= appt.deadline:
            raise transition_error("the request expired")
        if appt.pending_move is not None:
            raise transition_error("a move is already waiting for the doctor")
        if slot_id == appt.slot_id:
            raise Conflict("the appointment already has this slot", code="slot_unavailable")
        holder = move_holder(appt.id)
        start, end, deadline = await self._take(appt, holder, slot_id, now)
        if appt.status == "requested":
            moved = msgspec.structs.replace(
                appt, slot_id=slot_id, start=start, end=end, deadline=deadline,
                sequence=appt.sequence + 1,
            )  # fmt: skip
            new_slot = Slot(
                id=slot_id, doctor_id=appt.doctor_id, start=start, end=end, status="requested",
                appointment_id=appt.id, patient_id=appt.patient_id, deadline=deadline,
                requested_at=now,
            )  # fmt: skip
            ops: list[Op] = [
                *st.moved_ops(moved, appt, version),
                st.hold_delete(appt),
                st.hold_put(moved, "absent"),
                Put(item=st.slot_item(self._free(appt)), expect="present"),
                Put(item=st.slot_item(new_slot), expect="present"),
                *ctx.notices.rescheduled(moved, appt, now),
            ]
            hold_at = len(st.moved_ops(moved, appt, version)) + 1  # the new slot's HOLD
        else:
            move = MoveDoc(
                slot_id=slot_id, start=start, end=end, deadline=deadline, requested_at=now
            )
            moved = msgspec.structs.replace(appt, pending_move=move)
            new_slot = Slot(
                id=slot_id, doctor_id=appt.doctor_id, start=start, end=end, status="requested",
                appointment_id=appt.id, patient_id=appt.patient_id, deadline=deadline,
                requested_at=now, move=True,
            )  # fmt: skip
            main_ops = st.appointment_ops(moved, version)
            ops = [
                *main_ops,
                st.move_hold_put(appt, slot_id, "move", "absent"),
                Put(item=st.slot_item(new_slot), expect="present"),
            ]
            hold_at = len(main_ops)
        await self._record(appt, holder, slot_id, start, end, ops, hold_at, now)
        if moved.status == "requested":
            await self._apply_in_redis(moved, appt, now)
            pairs = await self.views.frames(
                moved, "appointment.rescheduled", patient=True, doctor=True
            )
        else:
            pairs = await self.views.frames(
                moved, "appointment.move_requested", patient=False, doctor=True
            )
        await ctx.publish(pairs)
        return await self.views.view_named(moved, principal.user_id)

    async def _take(
        self, appt: Appointment, holder: str, slot_id: str, now: int
    ) -> tuple[int, int, int]:
        """Steps 1: the new slot for the holder (reserve.lua), the patient's overlap
        (claim.lua); (start, end, deadline) of the new slot. Releases it if the claim fails."""
        ctx = self.ctx
        doctor_id = appt.doctor_id
        taken = self.reservations.taken_template(doctor_id, slot_id)
        reserved = await ctx.doctor_eval(
            ctx.scripts.reserve,
            doctor_id,
            hold_keys(doctor_id, slot_id),
            [holder, appt.patient_id, now, ctx.ttl_ms, DECISION_LEAD_MS, slot_id,
             taken.channel, *taken.for_script(now)],
            retry=True,
        )  # fmt: skip
        if not reserved.ok:
            if reserved.outcome == "not_found":
                raise slot_not_found()
            if reserved.outcome == "past":
                raise Invalid("the slot starts in the past", code="slot_in_past")
            raise Conflict("the slot is not open", code="slot_unavailable")
        start, end, deadline = reserved.start, reserved.end, reserved.deadline
        stub = self._holder_stub(appt, holder, slot_id, start, end, deadline, reserved.requested_at)
        try:
            await ctx.redis.zadd(keys.sweep_index(), {doctor_id: deadline}, lt=True)
            await self.reservations.claim(stub, now, slack=1)
        except BaseException:
            await self._release(stub, now)
            raise
        return start, end, deadline

    async def _record(
        self, appt: Appointment, holder: str, slot_id: str, start: int, end: int,
        ops: list[Op], hold_at: int, now: int,
    ) -> None:  # fmt: skip
        """Step 2: the store transaction; on any failure the new slot is released."""
        ctx = self.ctx
        stub = self._holder_stub(appt, holder, slot_id, start, end, 0, now)
        try:
            await ctx.store.transact(ops)
        except ConditionFailed as exc:
            await self._release(stub, now)
            if exc.index == hold_at:  # the store holds the new slot for another appointment
                await ctx.rebuild.doctor(appt.doctor_id, force=True)
                raise Conflict("the slot is not open", code="slot_unavailable") from exc
            raise transition_error("the appointment changed meanwhile") from exc
        except BaseException:
            await self._release(stub, now)
            raise
        ctx.notices.wake()

    # --- the doctor decides -------------------------------------------------------------------
    async def accept(
        self, principal: Principal, appt: Appointment, version: int
    ) -> AppointmentView:
        """Apply a confirmed appointment's pending move: the new slot and meeting times, the
        old slot open; ``appointment.rescheduled`` to both. Conflict ``invalid_transition``
        once lapsed or changed meanwhile."""
        ctx = self.ctx
        move = appt.pending_move
        assert move is not None
        now = ctx.clock()
        if now >= move.deadline:
            raise transition_error("the move lapsed")
        hold = await ctx.store.get(st.doctor_pk(appt.doctor_id), st.hold_sk(move.slot_id))
        if hold is None or hold.data.get("appointment_id") != appt.id:
            raise transition_error("the move no longer holds its slot")
        meeting = appt.meeting
        moved = msgspec.structs.replace(
            appt, slot_id=move.slot_id, start=move.start, end=move.end, pending_move=None,
            decided_at=now, sequence=appt.sequence + 1,
            meeting=None if meeting is None else msgspec.structs.replace(
                meeting, starts_at=move.start, ends_at=move.start + ctx.meeting_ms
            ),
        )  # fmt: skip
        booked = Slot(
            id=move.slot_id, doctor_id=appt.doctor_id, start=move.start, end=move.end,
            status="booked", appointment_id=appt.id, patient_id=appt.patient_id,
        )  # fmt: skip
        ops: list[Op] = [
            *st.moved_ops(moved, appt, version),
            st.hold_delete(appt),
            st.move_hold_put(appt, move.slot_id, "confirmed", hold.version),
            Put(item=st.slot_item(self._free(appt)), expect="present"),
            Put(item=st.slot_item(booked), expect="present"),
            *ctx.notices.rescheduled(moved, appt, now),
        ]
        await ctx.store_transition(ops)
        ctx.notices.wake()
        await self._apply_in_redis(moved, appt, now)
        await ctx.publish(
            await self.views.frames(moved, "appointment.rescheduled", patient=True, doctor=True)
        )
        return await self.views.view_named(moved, principal.user_id)

    async def drop(
        self,
        appt: Appointment,
        version: int,
        event: str | None,
        now: int,
        *,
        hand_over: bool = True,
    ) -> Appointment:
        """Drop the pending move (refused, lapsed, or before a cancellation): the appointment
        stays where it was, the new slot is freed; ``event`` (if any) to the patient. Conflict
        ``invalid_transition`` if the appointment changed meanwhile."""
        ctx = self.ctx
        move = appt.pending_move
        assert move is not None
        kept = msgspec.structs.replace(appt, pending_move=None)
        free = Slot(id=move.slot_id, doctor_id=appt.doctor_id, start=move.start, end=move.end)
        ops: list[Op] = [
            *st.appointment_ops(kept, version),
            st.move_hold_delete(appt, move.slot_id),
            Put(item=st.slot_item(free), expect="present"),
        ]
        await ctx.store_transition(ops)
        holder = move_holder(appt.id)
        stub = self._holder_stub(appt, holder, move.slot_id, move.start, move.end, 0, now)
        await ctx.rebuild.after_commit(
            appt.doctor_id, ctx.reopen(stub, now, hand_over=hand_over), [move.slot_id]
        )
        if event is not None:
            await ctx.publish(await self.views.frames(kept, event, patient=True, doctor=False))
        return kept

    async def refuse(
        self, principal: Principal, appt: Appointment, version: int
    ) -> AppointmentView:
        kept = await self.drop(appt, version, "appointment.move_refused", self.ctx.clock())
        return await self.views.view_named(kept, principal.user_id)

    async def lapse(self, holder: str, slot_id: str, now: int) -> bool | None:
        """The sweeper claimed a move holder at its deadline: lapse the pending move (True),
        or bring Redis in line with the store (False); None when the store knows no such
        move at all (a ghost reservation, released by the caller like any other)."""
        ctx = self.ctx
        appointment_id = appointment_of_holder(holder)
        assert appointment_id is not None
        try:
            appt, version = await ctx.load_appointment(appointment_id)
        except NotFound:
            appt = None
        move = appt.pending_move if appt is not None else None
        if appt is not None and move is not None and move.slot_id == slot_id:
            if move.deadline > now:
                return False
            try:
                await self.drop(appt, version, "appointment.move_lapsed", now)
            except Conflict:
                return False
            return True
        if appt is not None and appt.slot_id == slot_id and appt.status in ACTIVE:
            # The move was applied in the store but Redis missed it: rebuild from the store.
            await ctx.rebuild.doctor(appt.doctor_id, force=True)
            return False
        return None

    # --- redis --------------------------------------------------------------------------------
    async def _apply_in_redis(self, moved: Appointment, before: Appointment, now: int) -> None:
        """Step 3 once stored: move.lua (idempotent), then the patient's holds follow."""
        ctx = self.ctx
        holder = move_holder(moved.id)
        await ctx.rebuild.after_commit(
            moved.doctor_id, self._move(moved, before, now), [before.slot_id, moved.slot_id]
        )
        try:
            async with ctx.redis.pipeline(transaction=False) as pipe:
                pipe.hset(keys.patient_holds(moved.patient_id), moved.id, moved.hold_value())
                pipe.hdel(keys.patient_holds(moved.patient_id), holder)
                await pipe.execute()
        except RedisError:  # the stale entry stops counting at its end or deadline (claim.lua)
            log.warning("could not move the patient's hold %s", moved.id, exc_info=True)

    async def _move(self, moved: Appointment, before: Appointment, now: int) -> None:
        ctx = self.ctx
        d = moved.doctor_id
        channel, frame = events.slot_frame(d, before.slot_id, before.start, before.end, "open", now)
        mode = "requested" if moved.status == "requested" else "booked"
        # With a waitlist wired, the old slot is left to its release script (held for the next
        # waiting patient or opened), as every freed slot is.
        waitlist = ctx.waitlist
        reply = await ctx.doctor_eval(
            ctx.scripts.move,
            d,
            [keys.slot(d, moved.slot_id), keys.slot(d, before.slot_id),
             keys.doctor_open_slots(d), keys.doctor_deadlines(d), keys.doctor_pending(d),
             keys.doctor_hydrated(d)],
            [moved.id, move_holder(moved.id), moved.slot_id,
             "" if waitlist else before.slot_id, now, mode, moved.deadline, channel, frame],
            retry=True,
        )  # fmt: skip
        if not reply.ok:  # Redis does not hold the move (flushed, stale): the store does
            await ctx.rebuild.doctor(d, force=True)
        elif waitlist is not None:
            await waitlist.release(
                d, before.slot_id, before.start, before.end, mode="appt", ref=moved.id, now=now
            )

    async def _release(self, stub: Appointment, now: int) -> None:
        try:
            await self.ctx.reopen(stub, now)
        except Exception:
            log.warning("could not release the move %s", stub.id, exc_info=True)

    @staticmethod
    def _free(appt: Appointment) -> Slot:
        return Slot(id=appt.slot_id, doctor_id=appt.doctor_id, start=appt.start, end=appt.end)

    @staticmethod
    def _holder_stub(
        appt: Appointment, holder: str, slot_id: str, start: int, end: int, deadline: int,
        requested_at: int,
    ) -> Appointment:  # fmt: skip
        """The move as reserve.lua, claim.lua and reopen.lua know it: a request by the holder."""
        return msgspec.structs.replace(
            appt, id=holder, status="requested", slot_id=slot_id, start=start, end=end,
            deadline=deadline, requested_at=requested_at, pending_move=None,
        )  # fmt: skip
