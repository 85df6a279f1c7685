"""Reservation: ``POST /v1/appointments``.

1. ``reserve.lua`` on the doctor's hash tag: the slot is open and far enough ahead → it becomes
   ``requested`` by this appointment id, with its deadline, out of the open set, and
   ``slot.updated`` ("taken") is published. Losers of a race stop here (one round trip).
2. The doctor joins the global sweep index (``ZADD LT`` at the deadline; a separate command,
   since the index has no doctor hash tag and may not be touched by the script), concurrently
   with ``claim.lua`` on the patient's hash tag: no overlapping active appointment of the
   patient (see the script's header for why this is a second script) — else the slot is
   released.
3. The request is stored durably (appointment, slot status and the slot's ``HOLD`` guard with
   ``absent`` conditions, in one transaction) so a rebuild keeps undecided requests. If that
   write fails the reservation is released in Redis and the call is ``Unavailable``.
4. ``appointment.requested`` goes to the doctor.

Every step is idempotent by appointment id, so a retry after a timeout (ours, or the client's
with the same ``Idempotency-Key``, which maps to the same appointment id) returns the same
reservation. A call dying between steps 1 and 3 (process killed, call cancelled, release
failed) leaves a "ghost" reservation (taken in Redis, unknown to the store); step 2 put the
doctor in the sweep index before the store write, so the sweeper releases it at its deadline.
If step 1 itself fails without an answer (a timeout, a cancelled call: it may have landed), the
doctor is indexed at the latest deadline the reservation can have. The window left is a process
dying between the script's reply and the ``ZADD`` (one round trip); the sweepers' periodic
re-index (``Expiry.reindex``) finds such a request within about five minutes.

Who may undo: the call that made the reservation. ``reserve.lua`` answers ``already`` to a
retry of a reservation that landed, so after our own timeout retry the answer is ``already``
although this call made it; when the appointment id was minted by this call (no
``Idempotency-Key``) nobody else can hold it, so ``already`` counts as ours too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import RedisError

from engine import keys
from engine.booking import _idempotency as idem
from engine.booking import _store as layout
from engine.booking._context import (
    DECISION_LEAD_MS,
    doctor_of_slot,
    hold_keys,
    redis_guard,
    slot_not_found,
)
from engine.booking._model import ACTIVE, MOVE_SUFFIX, Appointment, AppointmentView, Slot
from engine.cache import BoundedCache
from engine.errors import Conflict, EngineError, Invalid, NotFound
from engine.lua import text
from engine.realtime import events
from engine.store import ConditionFailed, Put
from engine.timeutil import new_id

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.booking._context import BookingContext
    from engine.booking._views import Views
    from engine.principal import Principal
    from engine.store import Op

log = logging.getLogger("healthmed.booking")

IDEMPOTENCY_TTL_S = idem.TTL_MS // 1000
_encoder = msgspec.json.Encoder()
_TEMPLATES_MAX = 100_000


class _StaleRedis(Conflict):
    """The store holds the slot for another request although Redis had it open."""


class Reservations:
    """Requests for a slot (see the module docstring)."""

    def __init__(self, ctx: BookingContext, views: Views) -> None:
        self.ctx = ctx
        self.views = views
        self._taken: BoundedCache[str, events.FrameTemplate] = BoundedCache(_TEMPLATES_MAX)
        """slot.updated ("taken") per slot: a reservation is the hot path."""

    @redis_guard
    async def request(
        self, principal: Principal, slot_id: str, idempotency_key: str | None = None
    ) -> AppointmentView:
        """Reserve a slot for the calling patient; the new appointment as the patient sees it.

        ``Conflict`` ``slot_unavailable`` / ``patient_overlap`` / ``request_limit``, ``Invalid``
        ``slot_in_past``, ``NotFound`` for an unknown slot, ``Unavailable`` (nothing reserved)
        when Redis or the store fails. With an ``idempotency_key``, the same key from the same
        patient returns the first outcome (:mod:`engine.booking._idempotency`)."""
        principal.require("patient")
        if idempotency_key is None:
            appt = await self._request(principal.user_id, slot_id, new_id(), minted=True)
            return await self._patient_view(appt)
        idem.check_key(idempotency_key)
        patient_id = principal.user_id
        bind = keys.patient_idempotency(patient_id, idempotency_key)
        answer = keys.patient_idempotent_response(patient_id, idempotency_key)
        fresh = new_id()
        async with self.ctx.redis.pipeline(transaction=False) as pipe:
            pipe.get(answer)
            # The key is bound to its first appointment id and slot: a retry reuses the id
            # (the reservation is idempotent by it); the same key for another slot is refused.
            pipe.set(bind, f"{fresh} {slot_id}", nx=True, get=True, ex=IDEMPOTENCY_TTL_S)
            cached, bound = await pipe.execute()
        appointment_id = fresh
        if bound is not None:
            appointment_id, _, bound_slot = text(bound).partition(" ")
            if bound_slot != slot_id:
                raise idem.reused()
        if cached is not None:
            return idem.replay(cached)
        # Redis has no outcome: new key, first attempt in flight, or Redis lost. The store knows.
        now = self.ctx.clock()
        record, expect = await idem.load(self.ctx.store, patient_id, idempotency_key, now)
        if record is not None:
            return await self._replay_record(record, slot_id, bind, answer, now)
        use = idem.KeyUse(
            patient_id=patient_id, key=idempotency_key, slot_id=slot_id, now=now, expect=expect
        )
        try:
            appt = await self._request(patient_id, slot_id, appointment_id, minted=False, key=use)
        except idem.Replayed as replayed:
            return await self._replay_record(replayed.record, slot_id, bind, answer, now)
        except EngineError as exc:
            kind = idem.replayable_kind(exc)
            if kind is None:
                raise  # a failure (Unavailable) has no outcome: the key may be retried
            outcome = idem.Outcome.of_error(exc, kind)
            try:
                await self.ctx.store.put(use.put(appointment_id, outcome).item, expect=use.expect)
            except ConditionFailed:
                first, _ = await idem.load(self.ctx.store, patient_id, idempotency_key, now)
                if first is not None:
                    return await self._replay_record(first, slot_id, bind, answer, now)
                raise
            await self._cache(answer, outcome.encode(), idem.TTL_MS)
            raise
        view = await self._patient_view(appt)
        outcome = idem.Outcome(body=_encoder.encode(view).decode())
        await self._cache(answer, outcome.encode(), idem.TTL_MS)
        return view

    async def _replay_record(
        self, record: idem.Record, slot_id: str, bind: str, answer: str, now: int
    ) -> AppointmentView:
        """Replay a key's stored outcome, rebuilding its Redis copy (binding and outcome)."""
        if record.slot_id != slot_id:
            raise idem.reused()
        left = record.expires_at - now
        await self._cache(bind, f"{record.appointment_id} {record.slot_id}", left)
        await self._cache(answer, record.outcome, left)
        return idem.replay(record.outcome)

    async def _cache(self, key: str, value: bytes | str, ttl_ms: int) -> None:
        """Best effort: the store holds the record; a lost copy is rebuilt from it."""
        try:
            await self.ctx.redis.set(key, value, px=max(1, ttl_ms))
        except RedisError:
            log.warning("could not cache an idempotency record in redis", exc_info=True)

    async def _request(
        self,
        patient_id: str,
        slot_id: str,
        appointment_id: str,
        *,
        minted: bool,
        key: idem.KeyUse | None = None,
    ) -> Appointment:
        """Reserve, claim, store (see the module docstring). ``minted``: ``appointment_id`` was
        made by this very call (no ``Idempotency-Key``), so a reservation holding it is ours.
        ``key``: the ``Idempotency-Key`` whose record is stored with the request."""
        doctor_id = doctor_of_slot(slot_id)
        now = self.ctx.clock()
        taken = self.taken_template(doctor_id, slot_id)
        try:
            reserved = await self.ctx.doctor_eval(
                self.ctx.scripts.reserve,
                doctor_id,
                hold_keys(doctor_id, slot_id),
                [appointment_id, patient_id, now, self.ctx.ttl_ms, DECISION_LEAD_MS, slot_id,
                 taken.channel, *taken.for_script(now)],
                retry=True,
            )  # fmt: skip
        except BaseException:
            # No answer (timeout, cancelled, Redis failing over): the script may have landed,
            # leaving a reservation nobody will store. Its deadline is at most now + TTL, so
            # the sweeper looks at the doctor then at the latest; sooner, the doctor is rebuilt
            # from the store without this slot's in-flight entry (see _forget).
            await self._index_for_sweep(doctor_id, now + self.ctx.ttl_ms, appointment_id)
            await asyncio.shield(self._forget(doctor_id, slot_id))
            raise
        if not reserved.ok:
            if reserved.outcome == "not_found":
                raise slot_not_found()
            if reserved.outcome == "past":
                raise Invalid("the slot starts in the past", code="slot_in_past")
            if reserved.outcome == "too_late":
                raise Conflict(
                    "requests close 15 minutes before the slot starts", code="slot_unavailable"
                )
            raise Conflict("the slot is not open", code="slot_unavailable")
        fresh = minted or reserved.outcome == "reserved"
        deadline = reserved.deadline
        held_for = reserved.hold_entry  # the waitlist hold this request takes, fulfilled with it
        waitlist = self.ctx.waitlist if held_for else None
        stub = Appointment(
            id=appointment_id, status="requested", doctor_id=doctor_id, patient_id=patient_id,
            slot_id=slot_id, start=reserved.start, end=reserved.end, price_cents=0,
            currency="BRL", requested_at=reserved.requested_at, deadline=deadline,
        )  # fmt: skip
        try:
            # The sweep index entry must exist before the store write: from here on, whatever
            # stops this call, the sweeper finds the reservation and releases it if unstored.
            indexed, claimed = await asyncio.gather(
                self.ctx.redis.zadd(keys.sweep_index(), {doctor_id: deadline}, lt=True),
                self.claim(stub, now),
                return_exceptions=True,
            )
            for outcome in (claimed, indexed):
                if isinstance(outcome, BaseException):
                    raise outcome
            profile = await self.ctx.accounts.get_doctor(doctor_id)
            appt = msgspec.structs.replace(
                stub,
                price_cents=int(profile.price.amount_cents),
                currency=str(profile.price.currency),
            )
            fulfil = await waitlist.fulfilment(doctor_id, held_for) if waitlist else []
            stored = await self._store_request(appt, key, fulfil)
        except BaseException as exc:
            if isinstance(exc, idem.Replayed) and exc.record.appointment_id == appointment_id:
                raise  # a duplicate of this very request stored it: the reservation is right
            if fresh:  # only the call that made the reservation may undo it
                await self._undo(stub, now, undo=bool(held_for))
            if isinstance(exc, (_StaleRedis, idem.Replayed)):
                await self.ctx.rebuild.doctor(doctor_id, force=True)
            raise
        if waitlist is not None:
            await waitlist.fulfilled(doctor_id, held_for, appt.start, appt.end)
        if stored is not appt:
            return stored  # an earlier attempt with this id already stored it
        pairs = events.frames(
            [events.doctor_appointments_topic(doctor_id)],
            "appointment.requested",
            await self.views.named(appt.view(), appt, doctor_id),
        )
        await self.ctx.publish(pairs)
        return appt

    async def _index_for_sweep(self, doctor_id: str, score: int, appointment_id: str) -> None:
        """Best effort: put the doctor in the sweep index by ``score`` (or keep an earlier one)."""
        try:
            await self.ctx.redis.zadd(keys.sweep_index(), {doctor_id: score}, lt=True)
        except Exception:
            log.warning("could not index %s for the sweeper", appointment_id, exc_info=True)

    def taken_template(self, doctor_id: str, slot_id: str) -> events.FrameTemplate:
        """The slot.updated ("taken") frame of a slot: reserve.lua fills in the start and end
        it holds, the time is filled in here. Cached per slot."""
        template = self._taken.get(slot_id)
        if template is None:
            template = self._taken.put(
                slot_id, events.slot_updated_template(doctor_id, slot_id, "taken")
            )
        return template

    async def _undo(self, stub: Appointment, now: int, *, undo: bool = False) -> None:
        """Release our unstored reservation (``undo``: it took a waitlist hold, which goes
        back to its holder); if Redis cannot be told (it is failing), forget the slot's
        in-flight entry instead, so the slot is not held until its deadline."""
        try:
            await self.ctx.reopen(stub, now, undo=undo)
        except Exception:
            log.warning("could not release reservation %s", stub.id, exc_info=True)
            await self._forget(stub.doctor_id, stub.slot_id)

    async def _forget(self, doctor_id: str, slot_id: str) -> None:
        """Rebuild the doctor from the store, dropping ``slot_id``'s in-flight entry (a
        reservation this call made, or may have made, and never stored). Invalidation is
        remembered while Redis is down and applied once it answers (the Redis watcher), so
        after a failover the slot shows what the store holds within seconds, not at the
        reservation's deadline. Safe for a rival reservation of the same slot that was in
        flight: its store write still decides (the slot's HOLD guard), and a stale agenda is
        rebuilt on the conflict."""
        try:
            await self.ctx.rebuild.invalidate(doctor_id, [slot_id])
        except Exception:
            log.warning("could not invalidate doctor %s", doctor_id, exc_info=True)

    async def claim(self, appt: Appointment, now: int, *, slack: int = 0) -> None:
        """The patient half (claim.lua), rebuilding the patient's holdings when needed and
        dropping a stale hold (its appointment is over in the store) that blocks it.
        ``Conflict`` ``request_limit`` past the patient's caps
        (``HEALTHMED_REQUEST_LIMIT_PER_DOCTOR``, ``HEALTHMED_REQUEST_LIMIT_TOTAL``): one patient
        cannot hold a whole agenda. ``slack`` raises both caps (a move holds one request more
        only until it is applied or dropped)."""
        holds = keys.patient_holds(appt.patient_id)
        caps = [
            self.ctx.settings.request_limit_per_doctor + slack,
            self.ctx.settings.request_limit_total + slack,
        ]
        args = [appt.id, appt.start, appt.end, now, appt.doctor_id, appt.deadline, *caps]
        for _ in range(4):
            claimed = await self.ctx.eval(self.ctx.scripts.claim, [holds], args, retry=True)
            if claimed.ok:
                return
            if claimed.outcome == "not_hydrated":
                await self.ctx.rebuild.patient(appt.patient_id)
                continue
            if claimed.outcome == "request_limit":
                per_doctor = claimed.other == "doctor"
                limit = (
                    self.ctx.settings.request_limit_per_doctor
                    if per_doctor
                    else self.ctx.settings.request_limit_total
                )
                raise Conflict(
                    f"you already have {limit} undecided requests"
                    + (" with this doctor" if per_doctor else "")
                    + "; wait for a decision or cancel one",
                    code="request_limit",
                    limit=limit,
                    scope="doctor" if per_doctor else "total",
                )
            other = claimed.other
            moving = other.removesuffix(MOVE_SUFFIX) if other.endswith(MOVE_SUFFIX) else None
            try:
                blocking, _ = await self.ctx.load_appointment(moving or other)
            except NotFound:
                break  # possibly a request being stored right now: it counts
            if moving is not None:  # a pending move blocks while it is pending
                move = blocking.pending_move
                if blocking.status in ACTIVE and (move is None or move.end > now):
                    break  # (None: the move may be being stored right now)
            elif blocking.status in ACTIVE and blocking.end > now:
                break
            await self.ctx.redis.hdel(holds, other)
        raise Conflict(
            "you already have an appointment at an overlapping time", code="patient_overlap"
        )

    async def _store_request(
        self, appt: Appointment, key: idem.KeyUse | None, extra: Sequence[Op] = ()
    ) -> Appointment:
        """Store the request durably, with its ``Idempotency-Key`` record if ``key`` and
        ``extra`` ops (a fulfilled waitlist entry's removal); returns
        ``appt``, or the stored one if an earlier attempt with the same id got there first.
        ``Replayed`` if another attempt with the key stored its outcome first; ``Conflict`` if the
        store says another request holds the slot (Redis was stale: the doctor is rebuilt from
        the store)."""
        slot = Slot(
            id=appt.slot_id, doctor_id=appt.doctor_id, start=appt.start, end=appt.end,
            status="requested", appointment_id=appt.id, patient_id=appt.patient_id,
            deadline=appt.deadline, requested_at=appt.requested_at,
        )  # fmt: skip
        main, *index = layout.appointment_ops(appt, "absent")
        record = (
            [] if key is None else [key.put(appt.id, idem.Outcome(body=await self._body(appt)))]
        )
        try:
            await self.ctx.store.transact(
                [main, layout.hold_put(appt, "absent"),
                 Put(item=layout.slot_item(slot), expect="present"),
                 *index, *record, *self.ctx.notices.requested(appt), *extra]
            )  # fmt: skip
        except ConditionFailed as exc:
            if key is not None:
                first, _ = await idem.load(self.ctx.store, key.patient_id, key.key, key.now)
                if first is not None:
                    raise idem.Replayed(first) from exc
            if exc.index == 0:
                stored, _ = await self.ctx.load_appointment(appt.id)
                if stored.slot_id == appt.slot_id and stored.patient_id == appt.patient_id:
                    return stored
            raise _StaleRedis("the slot is not open", code="slot_unavailable") from exc
        self.ctx.notices.wake()
        return appt

    async def _patient_view(self, appt: Appointment) -> AppointmentView:
        """A new request as the patient sees it: with the doctor's name and specialty."""
        return await self.views.named(appt.view(), appt, appt.patient_id)

    async def _body(self, appt: Appointment) -> str:
        """:meth:`_patient_view` as JSON: what an ``Idempotency-Key`` replays."""
        return _encoder.encode(await self._patient_view(appt)).decode()
