"""Shared plumbing of the booking service: scripts, key lists, events, hydration.

Lazy hydration: every doctor script first checks the doctor's ``hydrated`` marker and answers
``not_hydrated`` when it is missing (Redis new, flushed or replaced). The service then rebuilds
that doctor from the store (:meth:`_Core.hydrate_doctor`) and runs the script again, so no
script ever acts on a doctor whose state was not loaded. Patients' holdings work the same way
with the ``~h`` field of their hash.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import msgspec
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import keys
from engine.booking import _store as st
from engine.booking._meeting import JitsiMeetings, MeetingProvider
from engine.booking._model import ACTIVE, Appointment, AppointmentView, Slot
from engine.booking._notices import BookingNotices
from engine.booking._rules import MAX_SLOT_MS
from engine.booking._scripts import Coalescer, Scripts, decode
from engine.errors import NotFound, Unavailable
from engine.realtime import events
from engine.timeutil import now_ms, to_rfc3339

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

    from engine.config import Settings
    from engine.notifications import Outbox
    from engine.store import Op, Store

log = logging.getLogger("healthmed.booking")

DECISION_LEAD_MS = 15 * 60_000
"""Requests close, and undecided ones expire, this long before the slot starts."""
SWEEP_LEASE_MS = 30_000
"""How long a sweeper's claim on an expired request hides it from other sweepers."""
_ULID_LEN = 26

P = ParamSpec("P")
T = TypeVar("T")


def redis_guard(
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn a Redis failure in a service call into ``Unavailable`` (503), never a 500."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except RedisError as exc:
            raise Unavailable("redis failed", code="redis_unavailable") from exc

    return wrapper


class AccountsPort(Protocol):
    """What booking needs from accounts (:class:`engine.accounts.AccountService`)."""

    async def get_doctor(self, doctor_id: str) -> Any: ...

    async def patient_name(self, patient_id: str) -> str | None: ...

    async def rate_doctor(
        self, doctor_id: str, stars: int, extra_ops: Sequence[Op] = ()
    ) -> None: ...


_DOCTOR_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
"""Doctor ids are ULIDs; anything else in a slot id is refused before it reaches Redis (it
would otherwise name keys, a rehydration and a log line)."""


def doctor_of_slot(slot_id: str) -> str:
    """Slot ids are ``<doctor id>.<ULID>``, so a request naming only the slot reaches the
    doctor's keys (hash tag) without a lookup. Malformed ids are 404."""
    doctor_id, dot, tail = slot_id.rpartition(".")
    if (
        not dot
        or len(tail) != _ULID_LEN
        or not tail.isalnum()
        or _DOCTOR_ID.fullmatch(doctor_id) is None
    ):
        raise NotFound("slot not found", code="slot_not_found")
    return doctor_id


def hold_value(appt: Appointment) -> str:
    """A patient's holds entry (claim.lua): ``start:end``, plus ``:doctor:deadline`` while it
    is a request (counted toward the patient's request caps)."""
    if appt.status == "requested":
        return f"{appt.start}:{appt.end}:{appt.doctor_id}:{appt.deadline}"
    return f"{appt.start}:{appt.end}"


class _Core:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        redis: Redis,
        accounts: AccountsPort,
        *,
        meetings: MeetingProvider | None = None,
        clock: Callable[[], int] = now_ms,
        outbox: Outbox | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.redis = redis
        self.accounts = accounts
        self.scripts = Scripts(redis)
        self._run_script = Coalescer(redis)
        self.meetings: MeetingProvider = meetings or JitsiMeetings(settings)
        self.notices = BookingNotices(settings, outbox, self.meetings)
        self.clock = clock
        self.ttl_ms = settings.request_ttl_seconds * 1000
        self.meeting_ms = settings.meeting_minutes * 60_000
        self._hydrating: dict[str, asyncio.Lock] = {}
        self._stale: dict[str, set[str]] = {}
        """Doctors whose Redis state a committed change could not reach, and the in-flight slot
        entries (pending/locked) of theirs to drop, while their marker could not be deleted
        either (Redis down): retried before their next use, see :meth:`_invalidate_doctor`."""
        self._taken_frames: dict[str, tuple[str, bytes, bytes, bytes, bytes]] = {}

    # --- scripts ------------------------------------------------------------------------------
    async def _eval(
        self, script: AsyncScript, keys_: list[str], args: list[Any], *, retry: bool = False
    ) -> list[Any]:
        """Run a script; ``retry`` once after a timeout (only for scripts idempotent by id)."""
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                return decode(await self._run_script(script, keys_, args))
            except RedisTimeoutError as exc:
                if attempt + 1 < attempts:
                    log.info("script timed out, retrying (idempotent)")
                    continue
                raise Unavailable("redis did not answer", code="redis_unavailable") from exc
            except RedisError as exc:
                raise Unavailable("redis failed", code="redis_unavailable") from exc
        raise AssertionError("unreachable")

    async def named(self, view: AppointmentView, appt: Appointment, viewer: str) -> AppointmentView:
        """``view`` with the other party's name: the doctor's view names the patient (the name
        only, never the CPF), the patient's names the doctor and the specialty. A party whose
        account is gone stays unnamed."""
        if viewer == appt.doctor_id:
            name = await self.accounts.patient_name(appt.patient_id)
            return msgspec.structs.replace(view, patient_name=name) if name else view
        try:
            doctor = await self.accounts.get_doctor(appt.doctor_id)
        except NotFound:
            return view
        return msgspec.structs.replace(
            view, doctor_name=str(doctor.name), doctor_specialty=str(doctor.specialty)
        )

    async def _doctor_eval(
        self,
        script: AsyncScript,
        doctor_id: str,
        keys_: list[str],
        args: list[Any],
        *,
        retry: bool = False,
    ) -> list[Any]:
        """Run a doctor script, hydrating the doctor first if the script says it is missing."""
        await self._check_stale(doctor_id)
        for _ in range(3):
            result = await self._eval(script, keys_, args, retry=retry)
            if result[0] == 0 and result[1] == "not_hydrated":
                await self.hydrate_doctor(doctor_id)
                continue
            return result
        raise Unavailable("the doctor's agenda could not be loaded", code="redis_unavailable")

    @staticmethod
    def _hold_keys(doctor_id: str, slot_id: str) -> list[str]:
        """KEYS of reserve.lua and reopen.lua."""
        return [
            keys.slot(doctor_id, slot_id),
            keys.doctor_open_slots(doctor_id),
            keys.doctor_deadlines(doctor_id),
            keys.doctor_pending(doctor_id),
            keys.doctor_hydrated(doctor_id),
        ]

    @staticmethod
    def _lock_keys(doctor_id: str, slot_id: str) -> list[str]:
        """KEYS of lock.lua and unlock.lua."""
        return [
            keys.slot(doctor_id, slot_id),
            keys.doctor_slots(doctor_id),
            keys.doctor_slot_ends(doctor_id),
            keys.doctor_open_slots(doctor_id),
            keys.doctor_hydrated(doctor_id),
        ]

    # --- events -------------------------------------------------------------------------------
    @staticmethod
    def _slot_frame(
        doctor_id: str, slot_id: str, start: int, end: int, status: str, at: int
    ) -> tuple[str, bytes]:
        data = {
            "slot_id": slot_id,
            "doctor_id": doctor_id,
            "start": to_rfc3339(start),
            "end": to_rfc3339(end),
            "status": status,
        }
        return events.frames([events.doctor_slots_topic(doctor_id)], "slot.updated", data, at)[0]

    async def _publish(self, pairs: list[tuple[str, bytes]]) -> None:
        """Fire-and-forget: the change is already committed; a lost event is re-read."""
        try:
            await events.publish(self.redis, pairs)
        except Exception:
            log.warning("event publication failed", exc_info=True)

    # --- after the store committed ---------------------------------------------------------
    async def _after_commit(
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
            await self._invalidate_doctor(doctor_id, slot_ids)
            return False
        except BaseException:  # cancelled mid-way: same treatment, then let it propagate
            await asyncio.shield(self._invalidate_doctor(doctor_id, slot_ids))
            raise
        return True

    async def _invalidate_doctor(self, doctor_id: str, slot_ids: Sequence[str] = ()) -> None:
        """Delete the doctor's hydrated marker (and the named slot hashes, in the same DEL) so
        the next script call rebuilds the doctor from the store. If Redis is down, remember it
        in-process: when Redis comes back with its old data the marker is still there, so the
        deletion is retried before the doctor's next use (:meth:`_check_stale`)."""
        stale = self._stale.get(doctor_id, set()) | set(slot_ids)
        try:
            await self.redis.delete(
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
            await self._invalidate_doctor(doctor_id)

    async def _check_stale(self, doctor_id: str) -> None:
        """Before using a doctor a committed change could not reach: invalidate it now (503 if
        Redis still fails)."""
        if doctor_id not in self._stale:
            return
        await self._invalidate_doctor(doctor_id)
        if doctor_id in self._stale:
            raise Unavailable("redis failed", code="redis_unavailable")

    # --- redis side of freeing a slot ---------------------------------------------------------
    async def _reopen(self, appt: Appointment, now: int) -> str:
        """Free the appointment's slot in Redis (reopening it if it has not started) and drop
        the patient's hold. Idempotent."""
        channel, frame = self._slot_frame(
            appt.doctor_id, appt.slot_id, appt.start, appt.end, "open", now
        )
        result = await self._doctor_eval(
            self.scripts.reopen,
            appt.doctor_id,
            self._hold_keys(appt.doctor_id, appt.slot_id),
            [appt.id, appt.slot_id, now, channel, frame],
            retry=True,
        )
        try:
            await self.redis.hdel(keys.patient_holds(appt.patient_id), appt.id)
        except RedisError:
            log.warning("could not drop the patient's hold %s", appt.id, exc_info=True)
        return str(result[1])

    # --- hydration ----------------------------------------------------------------------------
    async def hydrate_doctor(self, doctor_id: str, *, force: bool = False) -> int:
        """Rebuild one doctor's slots, open set and deadlines from the store.

        Without ``force`` it applies only while the doctor's marker is missing (so a crowd of
        requests after a flush rebuilds once). Returns the number of slots loaded.
        """
        lock = self._hydrating.get(doctor_id)
        if lock is None:
            if len(self._hydrating) > 10_000:  # only deduplicates; forgetting is harmless
                self._hydrating.clear()
            lock = self._hydrating[doctor_id] = asyncio.Lock()
        async with lock:
            if not force and await self.redis.exists(keys.doctor_hydrated(doctor_id)):
                return 0
            items = await self.store.query(st.doctor_pk(doctor_id), prefix="SLOT#")
            slots = [Slot.from_data(item.data) for item in items]
            loaded = await self._rebuild(doctor_id, slots, force=force)
            deadlines = [s.deadline for s in slots if s.status == "requested" and s.deadline]
            if deadlines:
                await self.redis.zadd(keys.sweep_index(), {doctor_id: min(deadlines)}, lt=True)
            return loaded

    async def _rebuild(self, doctor_id: str, slots: list[Slot], *, force: bool) -> int:
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
            members = await self.redis.zrange(keys.doctor_slots(doctor_id), 0, -1)
            ids = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
            ids = {m.removeprefix("~") for m in ids} | {s.id for s in slots}
            order = sorted(ids)
            position = {slot_id: 7 + i for i, slot_id in enumerate(order)}
            args: list[Any] = [1 if force else 0, self.clock(), prefix, len(slots)]
            for s in slots:
                args += [
                    position[s.id], s.id, s.start, s.end, s.status,
                    s.appointment_id or "", s.patient_id or "", s.deadline or "",
                    s.requested_at or "", to_rfc3339(s.start), to_rfc3339(s.end),
                ]  # fmt: skip
            result = await self._eval(
                self.scripts.rebuild, fixed + [prefix + slot_id for slot_id in order], args
            )
            if result[0] == 1:
                if result[1] == "rebuilt":
                    log.info("doctor %s rehydrated: %d slots", doctor_id, len(slots))
                return len(slots) if result[1] == "rebuilt" else 0
        raise Unavailable("the doctor's agenda kept changing during rehydration")

    async def hydrate_patient(self, patient_id: str) -> None:
        """Load a patient's active holdings from the store (after a flush). Additive, so it
        never drops a claim made concurrently."""
        now = self.clock()
        items = await self.store.query(
            st.user_pk(patient_id), prefix="APPT#", start=st.index_sk(max(0, now - MAX_SLOT_MS), "")
        )
        mapping: dict[Any, Any] = {"~h": "1"}
        for item in items:
            appt = Appointment.from_data(item.data)
            if appt.patient_id == patient_id and appt.status in ACTIVE and appt.end > now:
                mapping[appt.id] = hold_value(appt)
        await self.redis.hset(keys.patient_holds(patient_id), mapping=mapping)

    async def _load_appointment(self, appointment_id: str) -> tuple[Appointment, int]:
        item = await self.store.get(st.appt_pk(appointment_id), st.APPT_SK)
        if item is None:
            raise NotFound("appointment not found", code="appointment_not_found")
        return Appointment.from_data(item.data), item.version
