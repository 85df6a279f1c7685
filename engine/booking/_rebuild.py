"""Rebuilding Redis from the store: the one word for it in booking is *rebuild*.

A doctor is rebuilt lazily (a script answered ``not_hydrated``: the doctor's marker is missing
after a flush), forcibly (the store disagrees with Redis), or all doctors at once (start-up,
the Redis watcher, ``healthmed rebuild``). A rebuild keeps in-flight creates, edits and
reservations (rebuild.lua). A patient's holdings are rebuilt lazily, on their next
reservation.

After the store committed a change, the Redis side may fail: the doctor is then *invalidated*
(its marker deleted, so its next use rebuilds it). If even that fails (Redis down), the doctor
is remembered here as *stale* and invalidated before its next use.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from redis.exceptions import RedisError

from engine import keys
from engine.booking import _store as layout
from engine.booking._model import ACTIVE, Appointment, Slot, move_holder
from engine.booking._rules import MAX_SLOT_MS
from engine.cache import BoundedCache
from engine.errors import Unavailable
from engine.lua import Reply
from engine.store import keys as store_keys
from engine.timeutil import to_rfc3339

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    from redis.asyncio import Redis

    from engine.booking._scripts import Scripts
    from engine.lua import Script
    from engine.store import Store

R = TypeVar("R", bound=Reply)


class RebuildContext(Protocol):
    """What a rebuild uses of :class:`~engine.booking._context.BookingContext` (which builds
    the :class:`Rebuild` and so cannot be imported back here)."""

    store: Store
    redis: Redis
    scripts: Scripts
    clock: Callable[[], int]

    async def eval(
        self, script: Script[R], keys_: list[str], args: list[Any], *, retry: bool = False
    ) -> R: ...


log = logging.getLogger("healthmed.booking")

_REBUILD_LOCKS_MAX = 10_000


class Rebuild:
    """Rebuilds doctors and patients from the store; owns the rebuild state."""

    def __init__(self, ctx: RebuildContext) -> None:
        self.ctx = ctx
        self._locks: BoundedCache[str, asyncio.Lock] = BoundedCache(_REBUILD_LOCKS_MAX)
        """One per doctor being rebuilt, so a crowd of requests after a flush rebuilds once."""
        self._stale: dict[str, set[str]] = {}
        """Doctors whose Redis state a committed change could not reach, and the in-flight slot
        entries (pending/locked) of theirs to drop, while their marker could not be deleted
        either (Redis down): retried before their next use, see :meth:`invalidate`."""

    # --- doctors ------------------------------------------------------------------------------
    async def doctor(self, doctor_id: str, *, force: bool = False) -> int:
        """Rebuild one doctor's slots, open set and deadlines from the store.

        Without ``force`` it applies only while the doctor's marker is missing (so a crowd of
        requests after a flush rebuilds once). Returns the number of slots loaded.
        """
        ctx = self.ctx
        # The lock only deduplicates rebuilds: forgetting it at the cache's bound is harmless.
        lock = self._locks.get(doctor_id) or self._locks.put(doctor_id, asyncio.Lock())
        async with lock:
            if not force and await ctx.redis.exists(keys.doctor_hydrated(doctor_id)):
                return 0
            items = await ctx.store.query(
                layout.doctor_pk(doctor_id), prefix=store_keys.SLOT_PREFIX
            )
            slots = [Slot.from_data(item.data) for item in items]
            loaded = await self._replace(doctor_id, slots, force=force)
            deadlines = [s.deadline for s in slots if s.status == "requested" and s.deadline]
            if deadlines:
                await ctx.redis.zadd(keys.sweep_index(), {doctor_id: min(deadlines)}, lt=True)
            return loaded

    async def _replace(self, doctor_id: str, slots: list[Slot], *, force: bool) -> int:
        """rebuild.lua with the store's ``slots``, retried while the doctor's slots change."""
        ctx = self.ctx
        prefix = keys.slot(doctor_id, "")
        fixed = [
            keys.doctor_slots(doctor_id),
            keys.doctor_slot_ends(doctor_id),
            keys.doctor_open_slots(doctor_id),
            keys.doctor_deadlines(doctor_id),
            keys.doctor_pending(doctor_id),
            keys.doctor_hydrated(doctor_id),
        ]
        for _ in range(5):
            members = await ctx.redis.zrange(keys.doctor_slots(doctor_id), 0, -1)
            ids = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
            ids = {m.removeprefix("~") for m in ids} | {s.id for s in slots}
            order = sorted(ids)
            position = {slot_id: 7 + i for i, slot_id in enumerate(order)}
            args: list[Any] = [1 if force else 0, ctx.clock(), prefix, len(slots)]
            for s in slots:
                # a pending move's slot is held in Redis by the move holder (engine/booking/_moves)
                holder = move_holder(s.appointment_id) if s.move and s.appointment_id else None
                args += [
                    position[s.id], s.id, s.start, s.end, s.status,
                    # a held slot (waitlist): its entry and expiry in these two places
                    holder or s.appointment_id or s.hold_entry_id or "", s.patient_id or "",
                    s.deadline or s.hold_expires_at or "",
                    s.requested_at or "", to_rfc3339(s.start), to_rfc3339(s.end),
                ]  # fmt: skip
            reply = await ctx.eval(
                ctx.scripts.rebuild, fixed + [prefix + slot_id for slot_id in order], args
            )
            if reply.ok:
                if reply.outcome == "rebuilt":
                    log.info("doctor %s rebuilt: %d slots", doctor_id, len(slots))
                    return len(slots)
                return 0
        raise Unavailable("the doctor's agenda kept changing during its rebuild")

    async def every_doctor(self, *, force: bool = False) -> int:
        """Rebuild every doctor's slots, open set, undecided requests and deadlines in Redis
        from the store. Returns the number of slots loaded. Without ``force`` only doctors whose
        hydrated marker is missing are rebuilt (a flush drops every marker), so the Redis
        watcher never disturbs a loaded doctor; even forced, a rebuild keeps in-flight
        creates, edits and reservations (see rebuild.lua)."""
        ids = await self.doctor_ids()
        gate = asyncio.Semaphore(16)

        async def one(doctor_id: str) -> int:
            async with gate:
                return await self.doctor(doctor_id, force=force)

        counts = await asyncio.gather(*(one(d) for d in ids))
        log.info("booking rebuilt: %d doctors, %d slots", len(ids), sum(counts))
        return sum(counts)

    async def doctor_ids(self) -> list[str]:
        """Every registered doctor, from the store's doctors index."""
        doctors = await self.ctx.store.query_index("DOCTORS")
        return sorted(
            {str(item.data.get("id") or store_keys.user_id_of(item.pk)) for item in doctors}
        )

    # --- patients -----------------------------------------------------------------------------
    async def patient(self, patient_id: str) -> None:
        """Load a patient's active holdings from the store (after a flush). Additive, so it
        never drops a claim made concurrently."""
        ctx = self.ctx
        now = ctx.clock()
        items = await ctx.store.query(
            layout.user_pk(patient_id),
            prefix=store_keys.APPOINTMENT_PREFIX,
            start=layout.index_sk(max(0, now - MAX_SLOT_MS), ""),
        )
        mapping: dict[Any, Any] = {"~h": "1"}
        for item in items:
            appt = Appointment.from_data(item.data)
            if appt.patient_id == patient_id and appt.status in ACTIVE and appt.end > now:
                mapping[appt.id] = appt.hold_value()
            move = appt.pending_move
            if appt.patient_id == patient_id and appt.status in ACTIVE and move is not None:
                mapping[move_holder(appt.id)] = appt.move_hold_value()
        await ctx.redis.hset(keys.patient_holds(patient_id), mapping=mapping)

    # --- after the store committed ------------------------------------------------------------
    async def after_commit(
        self, doctor_id: str, step: Coroutine[Any, Any, object], slot_ids: Sequence[str] = ()
    ) -> bool:
        """Run the Redis side of a change the store has already committed. The store is the
        truth from then on, so a failure here never fails the call: it is logged and the doctor
        is invalidated (rebuilt from the store on next use), dropping ``slot_ids``' in-flight
        (pending/locked/requested) entries so the rebuild takes the store's version. True if
        it ran."""
        try:
            await step
        except (Unavailable, RedisError):
            log.warning(
                "redis not updated after a committed change of doctor %s; rebuilding it",
                doctor_id,
                exc_info=True,
            )
            await self.invalidate(doctor_id, slot_ids)
            return False
        except BaseException:  # cancelled mid-way: same treatment, then let it propagate
            await asyncio.shield(self.invalidate(doctor_id, slot_ids))
            raise
        return True

    async def invalidate(self, doctor_id: str, slot_ids: Sequence[str] = ()) -> None:
        """Delete the doctor's hydrated marker (and the named slot hashes, in the same DEL) so
        the next script call rebuilds the doctor from the store. If Redis is down, remember it
        in-process: when Redis comes back with its old data the marker is still there, so the
        deletion is retried before the doctor's next use (:meth:`check_stale`)."""
        stale = self._stale.get(doctor_id, set()) | set(slot_ids)
        try:
            await self.ctx.redis.delete(
                keys.doctor_hydrated(doctor_id), *(keys.slot(doctor_id, s) for s in stale)
            )
        except RedisError:
            log.error("could not invalidate doctor %s in redis; retried on next use", doctor_id)
            self._stale.setdefault(doctor_id, set()).update(stale)
            return
        # Forget only what this DEL covered: a concurrent failure may have added more.
        left = self._stale.get(doctor_id)
        if left is not None:
            left -= stale
            if not left:
                del self._stale[doctor_id]

    async def retry_invalidations(self) -> None:
        """Invalidate now every doctor a committed change could not reach while Redis was
        down (the Redis watcher calls this once Redis answers again)."""
        for doctor_id in list(self._stale):
            await self.invalidate(doctor_id)

    async def check_stale(self, doctor_id: str) -> None:
        """Before using a doctor a committed change could not reach: invalidate it now
        (``Unavailable`` if Redis still fails)."""
        if doctor_id not in self._stale:
            return
        await self.invalidate(doctor_id)
        if doctor_id in self._stale:
            raise Unavailable("redis failed", code="redis_unavailable")
