"""The booking service: availability, reservations, decisions, listings, privacy, recovery.

Built in layers (each a module of a few hundred lines): :mod:`._core` (scripts, hydration),
:mod:`._slots` (availability), :mod:`._reserve` (reservation), :mod:`._decisions` (accept,
refuse, cancel, expire, meeting, rating), and this module (listings, LGPD, rehydration of every
doctor, the expiry sweeper).

Expiry sweeper (runs in every replica): finding due requests is cheap. Each doctor's
undecided requests sit in a deadline sorted set under the doctor's tag; a global sorted set
(``keys.sweep_index``) holds each doctor with pending requests, scored by their earliest
deadline. A sweep reads the doctors due now from the global set, claims their due requests
with ``sweep.lua`` (a lease, so no other replica takes them), expires each one (store first,
conditioned on its version, so never twice), then resets the doctor's score from its deadline
set and re-reads that set once more, lowering the score if a request arrived meanwhile (a
reservation adds its doctor with ``ZADD LT`` after its script), so no deadline is forgotten.
A process killed in the one round trip between a reservation's script and that ``ZADD`` would
leave a request the index does not know; so every replica also re-indexes every doctor's
earliest deadline when its sweeper starts and every ``REINDEX_SECONDS`` after
(:meth:`BookingService.reindex_sweep`): such a request is expired at most that late.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import random
from typing import TYPE_CHECKING, Any, get_args

import msgspec

from engine import keys
from engine.booking import _store as st
from engine.booking._core import SWEEP_LEASE_MS, redis_guard
from engine.booking._decisions import _Decisions
from engine.booking._model import (
    ACTIVE,
    Appointment,
    AppointmentPage,
    AppointmentStatus,
    AppointmentView,
)
from engine.errors import Conflict, EngineError, Invalid, NotFound
from engine.timeutil import parse_rfc3339

if TYPE_CHECKING:
    from engine.notifications import CalendarEvent, OutboxItem
    from engine.principal import Principal, Role

log = logging.getLogger("healthmed.booking")

ERASED_JUSTIFICATION = "The account was erased at its owner's request (LGPD)."
_STATUSES = frozenset(get_args(AppointmentStatus))
_FAR_FUTURE_MS = 10 * 366 * 86_400_000
REINDEX_SECONDS = 300.0
"""How often (jittered +-25%) each replica re-indexes every doctor's earliest deadline."""
_REINDEX_BATCH = 500


def _encode_cursor(sk: str) -> str:
    return base64.urlsafe_b64encode(sk.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        sk = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Invalid("invalid cursor", code="invalid_cursor") from None
    if not sk.startswith("APPT#"):
        raise Invalid("invalid cursor", code="invalid_cursor")
    return sk


class BookingService(_Decisions):
    # --- listing and detail -------------------------------------------------------------------
    async def get_appointment(self, principal: Principal, appointment_id: str) -> AppointmentView:
        """One appointment for either participant (404 for anyone else)."""
        appt, _ = await self._participant(principal, appointment_id)
        return await self.view_named(appt, principal.user_id)

    async def list_appointments(
        self,
        principal: Principal,
        *,
        status: str | None = None,
        start: str | None = None,
        end: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> AppointmentPage:
        """The caller's appointments by slot start; ``status`` and start range ``[from, to)``
        filters; ``limit`` 1-100; ``next_cursor`` while more remain."""
        if not 1 <= limit <= 100:
            raise Invalid("limit must be 1 to 100", code="invalid_limit")
        if status is not None and status not in _STATUSES:
            raise Invalid("unknown status", code="invalid_status")
        lo = parse_rfc3339(start, field="from") if start else None
        hi = parse_rfc3339(end, field="to") if end else None
        after = _decode_cursor(cursor) if cursor else None
        pk = st.user_pk(principal.user_id)
        items: list[AppointmentView] = []
        fetch = 100
        while True:
            batch = await self.store.query(
                pk,
                prefix="APPT#",
                start=st.index_sk(lo, "") if lo is not None else None,
                end=st.index_sk(hi, "") if hi is not None else None,
                after=after,
                limit=fetch,
            )
            for item in batch:
                appt = Appointment.from_data(item.data)
                if status is None or appt.status == status:
                    items.append(await self.view_named(appt, principal.user_id))
                    if len(items) == limit:
                        return AppointmentPage(items=items, next_cursor=_encode_cursor(item.sk))
            if len(batch) < fetch:
                return AppointmentPage(items=items, next_cursor=None)
            after = batch[-1].sk

    async def _all_of(self, user_id: str) -> list[Appointment]:
        items = await self.store.query(st.user_pk(user_id), prefix="APPT#")
        return [Appointment.from_data(item.data) for item in items]

    # --- notifications and calendar -----------------------------------------------------------
    async def reminder_current(self, item: OutboxItem) -> bool:
        """Outbox guard: a reminder is sent only while its appointment is confirmed and still
        starts when the reminder was made for (a cancelled or moved one sends none)."""
        context = item.context or {}
        try:
            appt, _ = await self._load_appointment(str(context.get("appointment_id", "")))
        except NotFound:
            return False
        return appt.status == "confirmed" and appt.start == context.get("start_ms")

    async def calendar_events(self, user_id: str, start: int, end: int) -> list[CalendarEvent]:
        """The user's requested and confirmed appointments starting in ``[start, end)``, as
        their calendar feed shows them (with their own meeting link)."""
        items = await self.store.query(
            st.user_pk(user_id), prefix="APPT#", start=st.index_sk(start, ""),
            end=st.index_sk(end, ""),
        )  # fmt: skip
        events = []
        for item in items:
            appt = Appointment.from_data(item.data)
            if appt.status in ACTIVE:
                role: Role = "doctor" if appt.doctor_id == user_id else "patient"
                events.append(self.notices.calendar_event(appt, role))
        return events

    # --- LGPD ---------------------------------------------------------------------------------
    async def export_user(self, principal: Principal) -> dict[str, Any]:
        """``{"appointments": [...]}``: every appointment the user took part in."""
        appointments = [
            await self.view_named(appt, principal.user_id)
            for appt in await self._all_of(principal.user_id)
        ]
        return {"appointments": msgspec.to_builtins(appointments)}

    @redis_guard
    async def erase_user(self, principal: Principal) -> None:
        """Cancel the user's active appointments that have not ended (by that party, the other
        one is notified), remove a doctor's open slots, drop rating comments. Idempotent."""
        now = self.clock()
        for stale in await self._all_of(principal.user_id):
            if stale.status in ACTIVE and stale.end > now:
                try:
                    appt, version = await self._load_appointment(stale.id)
                    await self._cancel(
                        appt, version, principal.role, ERASED_JUSTIFICATION, principal.user_id
                    )
                except (Conflict, NotFound):
                    pass
            if principal.role == "patient" and stale.status == "confirmed":
                rating = await self.store.get(st.appt_pk(stale.id), st.RATING_SK)
                if rating is not None and rating.data.get("comment"):
                    data = {**rating.data, "comment": None}
                    await self.store.put(msgspec.structs.replace(rating, data=data))
        if principal.role == "doctor":
            for slot in await self._read_slots(principal.user_id, now, now + _FAR_FUTURE_MS):
                if slot.status == "open":
                    try:
                        await self.delete_slot(principal, slot.id)
                    except EngineError as exc:
                        if exc.status >= 500:
                            raise

    # --- recovery -----------------------------------------------------------------------------
    async def rehydrate(self, *, force: bool = False) -> int:
        """Rebuild every doctor's slots, open set, undecided requests and deadlines in Redis
        from the store. Returns the number of slots loaded. Without ``force`` only doctors whose
        hydrated marker is missing are rebuilt (a flush drops every marker), so the Redis
        watcher never disturbs a hydrated doctor; even forced, a rebuild keeps in-flight
        creates, edits and reservations (see rebuild.lua). Patients' holdings are rebuilt
        lazily, on their next reservation."""
        ids = await self._doctor_ids()
        gate = asyncio.Semaphore(16)

        async def one(doctor_id: str) -> int:
            async with gate:
                return await self.hydrate_doctor(doctor_id, force=force)

        counts = await asyncio.gather(*(one(d) for d in ids))
        log.info("booking rehydrated: %d doctors, %d slots", len(ids), sum(counts))
        return sum(counts)

    async def _doctor_ids(self) -> list[str]:
        """Every registered doctor, from the store's doctors index."""
        doctors = await self.store.query_index("DOCTORS")
        return sorted(
            {str(item.data.get("id") or item.pk.removeprefix("USER#")) for item in doctors}
        )

    # --- expiry sweeper -----------------------------------------------------------------------
    async def reindex_sweep(self) -> int:
        """Put every doctor with undecided requests in the sweep index at its earliest deadline
        (``ZADD LT``: never delays an entry). The number of doctors with requests."""
        ids = await self._doctor_ids()
        found = 0
        for at in range(0, len(ids), _REINDEX_BATCH):
            batch = ids[at : at + _REINDEX_BATCH]
            async with self.redis.pipeline(transaction=False) as pipe:
                for doctor_id in batch:
                    pipe.zrange(keys.doctor_deadlines(doctor_id), 0, 0, withscores=True)
                firsts = await pipe.execute()
            earliest = {d: first[0][1] for d, first in zip(batch, firsts, strict=True) if first}
            if earliest:
                await self.redis.zadd(keys.sweep_index(), earliest, lt=True)
                found += len(earliest)
        return found

    async def sweep_once(self, *, max_doctors: int = 100, max_items: int = 50) -> int:
        """Expire every due request of up to ``max_doctors`` doctors; the number expired."""
        now = self.clock()
        due = await self.redis.zrangebyscore(keys.sweep_index(), "-inf", now, 0, max_doctors)
        expired = 0
        for raw in due:
            doctor_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            deadlines = keys.doctor_deadlines(doctor_id)
            result = await self._doctor_eval(
                self.scripts.sweep,
                doctor_id,
                [deadlines, keys.doctor_pending(doctor_id), keys.doctor_hydrated(doctor_id)],
                [now, SWEEP_LEASE_MS, max_items],
            )
            claimed = result[2:]
            for i in range(0, len(claimed), 2):
                try:
                    if await self._expire(str(claimed[i]), str(claimed[i + 1]), now):
                        expired += 1
                except EngineError:
                    log.warning("expiry of %s failed; retried after the lease", claimed[i])
            first = await self.redis.zrange(deadlines, 0, 0, withscores=True)
            if first:
                await self.redis.zadd(keys.sweep_index(), {doctor_id: first[0][1]})
            else:
                await self.redis.zrem(keys.sweep_index(), doctor_id)
            again = await self.redis.zrange(deadlines, 0, 0, withscores=True)
            if again:
                await self.redis.zadd(keys.sweep_index(), {doctor_id: again[0][1]}, lt=True)
        return expired

    async def run_sweeper(self) -> None:
        """Sweep every ``sweep_interval_seconds`` until cancelled; re-index at start and
        every ``REINDEX_SECONDS``."""
        loop = asyncio.get_running_loop()
        reindex_at = loop.time()
        while True:
            try:
                if loop.time() >= reindex_at:
                    reindex_at = loop.time() + REINDEX_SECONDS * (0.75 + random.random() / 2)  # noqa: S311
                    await self.reindex_sweep()
                while await self.sweep_once() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("expiry sweep failed", exc_info=True)
            await asyncio.sleep(self.settings.sweep_interval_seconds)
