"""Decisions on a request, written through: accept, refuse, cancel, expire; meeting; rating.

Order for every transition: the store first, conditioned on the appointment's version (and,
for accept, on the slot's ``HOLD`` guard at its version), then Redis (a script, idempotent),
then the events. If the store fails the call is ``Unavailable`` and Redis is untouched; once the
store has committed, the store is the truth: if Redis then disagrees (flushed, stale) or fails, the
call still succeeds and the doctor is rebuilt from the store, which already has the decision (the
sweeper, too, resyncs a confirmed request Redis missed rather than reopening its slot). A
second confirmed appointment for one slot is impossible in the store: it would need a second
``HOLD`` for the slot, which is created only with an ``absent`` condition.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import RedisError

from engine import keys
from engine.booking import _store as layout
from engine.booking._context import doctor_of_slot, hold_keys, redis_guard, transition_error
from engine.booking._model import (
    ACTIVE,
    JUSTIFICATION_MAX,
    JUSTIFICATION_MIN,
    TEXT_MAX,
    Appointment,
    AppointmentView,
    Cancellation,
    MeetingDoc,
    MeetingView,
    Slot,
)
from engine.errors import Checks, Conflict, Invalid, NotFound
from engine.store import ConditionFailed, Item, Put
from engine.timeutil import to_rfc3339

if TYPE_CHECKING:
    from engine.booking._context import BookingContext
    from engine.booking._model import CancelledBy
    from engine.booking._moves import Moves
    from engine.booking._views import Views
    from engine.principal import Principal

log = logging.getLogger("healthmed.booking")


GHOST_GRACE_MS = 60_000
"""How old a reservation missing from the store must be before the sweeper releases it: more
than a store write can take (DynamoDB: 3 attempts of 3 s connect + 10 s read)."""


class Decisions:
    """What happens to a request once made (see the module docstring)."""

    def __init__(self, ctx: BookingContext, views: Views, moves: Moves) -> None:
        self.ctx = ctx
        self.views = views
        self.moves = moves

    # --- accept -------------------------------------------------------------------------------
    @redis_guard
    async def accept(self, principal: Principal, appointment_id: str) -> AppointmentView:
        """Confirm a request (its doctor only): ``Conflict`` ``invalid_transition`` unless
        ``requested`` and before its deadline; ``Unavailable`` with nothing changed if the store
        fails."""
        appt, version = await self.ctx.own_as(principal, appointment_id, "doctor")
        if appt.status == "confirmed" and appt.pending_move is not None:
            return await self.moves.accept(principal, appt, version)
        now = self.ctx.clock()
        if appt.status != "requested":
            raise transition_error(f"the appointment is {appt.status}, not requested")
        if now >= appt.deadline:
            raise transition_error("the request expired")
        hold = await self.ctx.store.get(
            layout.doctor_pk(appt.doctor_id), layout.hold_sk(appt.slot_id)
        )
        if hold is None or hold.data.get("appointment_id") != appt.id:
            raise transition_error("the request no longer holds its slot")
        confirmed = msgspec.structs.replace(
            appt,
            status="confirmed",
            decided_at=now,
            meeting=MeetingDoc(
                room=self.ctx.meetings.new_room(),
                starts_at=appt.start,
                ends_at=appt.start + self.ctx.meeting_ms,
            ),
        )
        booked = Slot(
            id=appt.slot_id, doctor_id=appt.doctor_id, start=appt.start, end=appt.end,
            status="booked", appointment_id=appt.id, patient_id=appt.patient_id,
        )  # fmt: skip
        await self.ctx.store_transition(
            [
                *layout.transition_ops(
                    confirmed, version, layout.hold_put(confirmed, hold.version), booked
                ),
                *self.ctx.notices.confirmed(confirmed, now),
            ]
        )
        self.ctx.notices.wake()
        await self.ctx.rebuild.after_commit(
            appt.doctor_id, self._mark_booked(confirmed), [appt.slot_id]
        )
        try:  # no longer a request: it stops counting toward the patient's request caps
            await self.ctx.redis.hset(
                keys.patient_holds(appt.patient_id), appt.id, confirmed.hold_value()
            )
        except RedisError:  # it stops counting at its deadline anyway (claim.lua)
            log.warning("could not update the patient's hold %s", appt.id, exc_info=True)
        await self.ctx.publish(
            await self.views.frames(confirmed, "appointment.confirmed", patient=True, doctor=True)
        )
        return await self.views.view_named(confirmed, principal.user_id)

    async def _mark_booked(self, appt: Appointment) -> None:
        """Redis side of a stored confirmation: the slot booked, its deadline gone (idempotent).
        If Redis does not hold the request (flushed, stale), rebuild the doctor from the store,
        which already has the confirmation."""
        slot, _, deadlines, pending, hydrated = hold_keys(appt.doctor_id, appt.slot_id)
        accepted = await self.ctx.doctor_eval(
            self.ctx.scripts.accept,
            appt.doctor_id,
            [slot, deadlines, pending, hydrated],
            [appt.id],
            retry=True,
        )
        if not accepted.ok:
            await self.ctx.rebuild.doctor(appt.doctor_id, force=True)

    # --- refuse, cancel, expire ---------------------------------------------------------------
    @redis_guard
    async def refuse(
        self,
        principal: Principal,
        appointment_id: str,
        reason: str | None = None,
        *,
        hand_over: bool = True,
    ) -> AppointmentView:
        """Refuse a request (its doctor only); frees the slot (``hand_over=False``: opened,
        never held for the waitlist, as time off wants before it deletes the slot)."""
        if reason is not None and len(reason) > TEXT_MAX:
            raise Invalid(
                f"reason is at most {TEXT_MAX} characters", code="invalid_reason", field="reason"
            )
        appt, version = await self.ctx.own_as(principal, appointment_id, "doctor")
        if appt.status == "confirmed" and appt.pending_move is not None:
            return await self.moves.refuse(principal, appt, version)
        if appt.status != "requested":
            raise transition_error(f"the appointment is {appt.status}, not requested")
        now = self.ctx.clock()
        refused = msgspec.structs.replace(
            appt, status="refused", decided_at=now, refusal_reason=reason or None
        )
        await self._close(refused, version, now, hand_over=hand_over)
        await self.ctx.publish(
            await self.views.frames(refused, "appointment.refused", patient=True, doctor=False)
        )
        return await self.views.view_named(refused, principal.user_id)

    @redis_guard
    async def cancel(
        self,
        principal: Principal,
        appointment_id: str,
        justification: str | None,
        *,
        hand_over: bool = True,
    ) -> AppointmentView:
        """Cancel (its patient or its doctor; justification 10-1000 characters, ``Invalid``
        otherwise) a requested or confirmed appointment that has not ended; reopens the slot if it
        has not started. ``cancellation.by`` is the caller's role; the other side is told (event
        and e-mail through the outbox)."""
        text = (justification or "").strip()
        if not JUSTIFICATION_MIN <= len(text) <= JUSTIFICATION_MAX:
            raise Invalid(
                f"justification must be {JUSTIFICATION_MIN} to {JUSTIFICATION_MAX} characters",
                code="invalid_justification",
                field="justification",
            )
        appt, version = await self.ctx.participant(principal, appointment_id)
        return await self.cancel_by(
            appt, version, principal.role, text, principal.user_id, hand_over=hand_over
        )

    async def cancel_by(
        self,
        appt: Appointment,
        version: int,
        by: CancelledBy,
        text: str,
        viewer: str,
        *,
        hand_over: bool = True,
    ) -> AppointmentView:
        now = self.ctx.clock()
        if appt.status not in ACTIVE:
            raise transition_error(f"the appointment is {appt.status}")
        if appt.end <= now:
            raise transition_error("the appointment is over")
        if appt.pending_move is not None:
            # its pending move goes first (its own write): a crash between leaves the
            # appointment confirmed where it was, never a slot held for nothing
            await self.moves.drop(appt, version, None, now, hand_over=hand_over)
            appt, version = await self.ctx.load_appointment(appt.id)
            if appt.status not in ACTIVE:
                raise transition_error(f"the appointment is {appt.status}")
        cancelled = msgspec.structs.replace(
            appt,
            status="cancelled",
            decided_at=appt.decided_at or now,
            cancellation=Cancellation(by=by, justification=text, at=now),
            sequence=appt.sequence + 1,
        )
        await self._close(cancelled, version, now, hand_over=hand_over)
        await self.ctx.publish(
            await self.views.frames(cancelled, "appointment.cancelled", patient=True, doctor=True)
        )
        return await self.views.view_named(cancelled, viewer)

    async def _close(
        self, closed: Appointment, version: int, now: int, *, hand_over: bool = True
    ) -> None:
        """Store the end of an active appointment (freeing its slot and hold), then free the
        slot in Redis. ``Conflict`` if the appointment changed meanwhile; ``Unavailable`` (Redis
        untouched) if the store fails. Once stored, a Redis failure does not fail the call: the
        doctor is rebuilt from the store on next use (:meth:`Rebuild.after_commit`)."""
        free = Slot(
            id=closed.slot_id, doctor_id=closed.doctor_id, start=closed.start, end=closed.end
        )
        await self.ctx.store_transition(
            [
                *layout.transition_ops(closed, version, layout.hold_delete(closed), free),
                *self.ctx.notices.closed(closed, now),
            ]
        )
        self.ctx.notices.wake()
        # The slot's Redis hash goes with the marker if this fails: a fresh "requested" there
        # would otherwise survive the rebuild as an in-flight reservation (rebuild.lua).
        if not await self.ctx.rebuild.after_commit(
            closed.doctor_id, self.ctx.reopen(closed, now, hand_over=hand_over), [closed.slot_id]
        ):
            await self.ctx.drop_patient_hold(closed)

    async def expire(self, appointment_id: str, slot_id: str, now: int) -> bool:
        """Expire one request claimed by the expiry sweep. True if this call expired it."""
        try:
            appt, version = await self.ctx.load_appointment(appointment_id)
        except NotFound:
            # A ghost: reserved in Redis but never stored (the process died, or the store
            # failed and the release did too). Release it.
            if slot_id:
                ghost = Appointment(
                    id=appointment_id, status="expired", doctor_id=doctor_of_slot(slot_id),
                    patient_id="", slot_id=slot_id, start=0, end=0, price_cents=0,
                    currency="BRL", requested_at=0, deadline=0,
                )  # fmt: skip
                await self._release_ghost(ghost, now)
            return False
        if appt.status == "confirmed":
            # Redis missed the confirmation (accept's Redis step failed after the store write):
            # bring Redis in line with the store; never reopen a booked slot.
            await self._resync_confirmed(appt, now)
            return False
        if appt.status != "requested":
            # Refused, expired or cancelled in the store, but Redis missed it: free the slot
            # (reopen.lua reopens it only if it has not started) and clear the stale deadline.
            await self.ctx.reopen(appt, now)
            return False
        if appt.deadline > now:
            return False
        expired = msgspec.structs.replace(appt, status="expired", decided_at=now)
        try:
            await self._close(expired, version, now)
        except Conflict:
            return False
        await self.ctx.publish(
            await self.views.frames(expired, "appointment.expired", patient=True, doctor=True)
        )
        return True

    async def _resync_confirmed(self, appt: Appointment, now: int) -> None:
        """Mark a confirmed appointment's slot booked in Redis (rebuilding the doctor from the
        store if Redis holds something else) and make sure its patient's hold is there."""
        await self._mark_booked(appt)
        if appt.end > now:
            await self.ctx.redis.hset(
                keys.patient_holds(appt.patient_id), appt.id, appt.hold_value()
            )

    async def _release_ghost(self, ghost: Appointment, now: int) -> None:
        """Release a reservation the store does not know, once it is ``GHOST_GRACE_MS`` old.

        A younger one may still have its store write on the way (a slot starting soon has a
        deadline only milliseconds after the request): left alone, its claim's lease brings
        it back to the sweeper, which then finds it stored, or still missing and old enough.
        """
        fields = await self.ctx.redis.hmget(
            keys.slot(ghost.doctor_id, ghost.slot_id),
            "start", "end", "patient_id", "requested_at", "appointment_id",
        )  # fmt: skip
        if fields[0] is None:
            await self.ctx.reopen(ghost, now)
            return
        start, end, patient, requested_at, holder = (
            v.decode() if isinstance(v, bytes) else v for v in fields
        )
        if holder == ghost.id and now - int(requested_at or 0) < GHOST_GRACE_MS:
            return
        real = msgspec.structs.replace(
            ghost, start=int(start or 0), end=int(end or 0), patient_id=patient or ""
        )
        await self.ctx.reopen(real, now)

    # --- meeting and rating -------------------------------------------------------------------
    @redis_guard
    async def meeting(self, principal: Principal, appointment_id: str) -> MeetingView:
        """The caller's meeting link (participants only); ``Conflict`` unless confirmed."""
        appt, _ = await self.ctx.participant(principal, appointment_id)
        view = self.views.meeting_view(appt, principal.user_id)
        if view is None:
            raise Conflict("the appointment is not confirmed", code="not_confirmed")
        return view

    async def rate(
        self, principal: Principal, appointment_id: str, stars: int, comment: str | None
    ) -> dict[str, object]:
        """Rate a confirmed appointment once after it ended (its patient): ``Conflict``
        ``rating_too_early`` before the end, ``not_confirmed`` for another status,
        ``already_rated`` the second time; ``Invalid`` for stars outside 1-5."""
        checks = Checks()
        if isinstance(stars, bool) or not 1 <= stars <= 5:
            checks.fail("stars", Invalid("stars must be 1 to 5", code="invalid_stars"))
        if comment is not None and len(comment) > TEXT_MAX:
            checks.fail(
                "comment",
                Invalid(f"comment is at most {TEXT_MAX} characters", code="invalid_comment"),
            )
        checks.done()
        appt, _ = await self.ctx.own_as(principal, appointment_id, "patient")
        now = self.ctx.clock()
        if appt.status != "confirmed":
            raise Conflict("only a confirmed appointment can be rated", code="not_confirmed")
        if now < appt.end:
            raise Conflict("the appointment has not ended yet", code="rating_too_early")
        rating = {
            "appointment_id": appt.id,
            "doctor_id": appt.doctor_id,
            "patient_id": appt.patient_id,
            "stars": stars,
            "comment": comment,
            "created_at": to_rfc3339(now),
        }
        op = Put(
            item=Item(pk=layout.appt_pk(appt.id), sk=layout.RATING_SK, data=rating), expect="absent"
        )
        try:
            await self.ctx.accounts.rate_doctor(appt.doctor_id, stars, [op])
        except ConditionFailed as exc:
            raise Conflict("this appointment was already rated", code="already_rated") from exc
        return rating
