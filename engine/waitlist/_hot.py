"""The waitlist's hot state in Redis: the scripts run on the doctor's hash tag (each rebuilds
the doctor's slots or waitlist first when it answers ``not_hydrated``), positions, and the
rebuild of a doctor's waitlist from the store (rebuild.lua).

Keys (all under ``{d:<doctor>}``, :mod:`engine.keys`): the entries hash (``from:to:patient:
seat``), the FCFS order, one sorted set per UTC day a window meets (the window index that
release.lua scans), each patient's windows at this doctor, offers, hold expiries, the entries
that passed a slot, and the waitlist's own hydrated marker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from redis.exceptions import RedisError

from engine import keys
from engine.cache import BoundedCache
from engine.errors import Conflict, Unavailable
from engine.realtime import events
from engine.timeutil import to_rfc3339
from engine.waitlist import _store as st
from engine.waitlist._model import (
    Entry,
    Offer,
)
from engine.waitlist._scripts import ForgetReply, ReleaseReply, decode, text

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from engine.waitlist._context import WaitlistContext

from engine.waitlist._context import DAY_MS, DECISION_LEAD_MS

log = logging.getLogger("healthmed.waitlist")
Mode = Literal["appt", "hold", "slot"]


def day_of(ms: int) -> int:
    return ms // DAY_MS


def _days(start: int, end: int) -> list[int]:
    """UTC days a window ``[start, end)`` meets."""
    return list(range(day_of(start), day_of(end - 1) + 1))


def _bucket_expiry(day: int) -> int:
    """A day bucket serves slots starting that day: kept until the next day ends."""
    return (day + 2) * DAY_MS


def _key_index(
    extra: dict[str, int], expiry: dict[str, int], base: int, key: str, expires: int = 0
) -> int:
    """The KEYS index (1-based) of ``key`` among ``base`` fixed keys and ``extra``."""
    if key not in extra:
        extra[key] = base + len(extra) + 1
        expiry[key] = expires
    return extra[key]


def _slot_data(doctor_id: str, slot_id: str, start: int, end: int, status: str) -> dict[str, str]:
    return {
        "slot_id": slot_id,
        "doctor_id": doctor_id,
        "start": to_rfc3339(start),
        "end": to_rfc3339(end),
        "status": status,
    }


class HotWaitlist:
    """Redis side of the waitlist: one doctor's scripts, positions, rebuilds."""

    def __init__(self, ctx: WaitlistContext) -> None:
        self.ctx = ctx
        self._hydrating: BoundedCache[str, asyncio.Lock] = BoundedCache(10_000)
        """A lock per doctor: it only deduplicates rebuilds, so forgetting one is harmless."""

    async def eval(
        self, script: AsyncScript, doctor_id: str, keys_: list[str], args: list[Any]
    ) -> list[Any]:
        """Run a doctor's script, rebuilding the slots or the waitlist first if it says so."""
        for _ in range(4):
            try:
                result = decode(await script(keys=keys_, args=args))
            except RedisError as exc:
                raise Unavailable("redis failed", code="redis_unavailable") from exc
            if result[0] == 0 and result[1] == "not_hydrated":
                if script is self.ctx.scripts.release:
                    await self.ctx.slots.rebuild_doctor(doctor_id)
                else:
                    await self.hydrate(doctor_id)
                continue
            if result[0] == 0 and result[1] == "not_hydrated_waitlist":
                await self.hydrate(doctor_id)
                continue
            return result
        raise Unavailable("the doctor's waitlist could not be loaded", code="redis_unavailable")

    @staticmethod
    def entry_keys(doctor_id: str, patient_id: str, start: int, end: int) -> list[str]:
        return [keys.waitlist_day(doctor_id, d) for d in _days(start, end)]

    async def forget(self, entry: Entry) -> str:
        """Remove the entry from the hot waitlist; the slot it held ("" if none)."""
        d = entry.doctor_id
        result = await self.eval(
            self.ctx.scripts.forget,
            d,
            [
                keys.waitlist(d),
                keys.waitlist_order(d),
                keys.waitlist_patient(d, entry.patient_id),
                keys.waitlist_offers(d),
                keys.waitlist_holds(d),
                *self.entry_keys(d, entry.patient_id, entry.start, entry.end),
            ],
            [entry.id, len(_days(entry.start, entry.end))],
        )
        return msgspec.convert(result, ForgetReply).slot

    async def add(self, entry: Entry) -> int:
        """Add the entry (add.lua); its FCFS seq (its ``created_at`` from then on)."""
        d = entry.doctor_id
        days = _days(entry.start, entry.end)
        result = await self.eval(
            self.ctx.scripts.add,
            d,
            [
                keys.waitlist(d),
                keys.waitlist_order(d),
                keys.waitlist_patient(d, entry.patient_id),
                keys.waitlist_hydrated(d),
                *(keys.waitlist_day(d, day) for day in days),
            ],
            [
                entry.id,
                entry.patient_id,
                entry.start,
                entry.end,
                entry.created_at,
                entry.seat,
                len(days),
                *(_bucket_expiry(day) for day in days),
            ],
        )
        if result[0] == 0:
            raise Conflict(
                "you already wait for this doctor in an overlapping window",
                code="already_waiting",
                entry_id=str(result[2]),
            )
        return int(result[2])

    async def position(self, entry: Entry) -> int:
        """1 + the entries of the doctor created before this one (FCFS rank)."""
        order = keys.waitlist_order(entry.doctor_id)
        for _ in range(2):
            try:
                rank: Any = await self.ctx.redis.zrank(order, entry.id)
            except RedisError as exc:
                raise Unavailable("redis failed", code="redis_unavailable") from exc
            if rank is not None:
                return int(rank) + 1
            await self.hydrate(entry.doctor_id)
        return 1

    async def has_waitlist(self, doctor_id: str) -> bool:
        """Whether the doctor has entries (one round trip; loads the waitlist if needed)."""
        for _ in range(2):
            async with self.ctx.redis.pipeline(transaction=False) as pipe:
                pipe.exists(keys.waitlist_hydrated(doctor_id))
                pipe.hlen(keys.waitlist(doctor_id))
                ready, count = await pipe.execute()
            if ready:
                return bool(count)
            await self.hydrate(doctor_id)
        return True

    async def hot_entry(self, doctor_id: str, entry_id: str) -> tuple[str | None, int | None]:
        async with self.ctx.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.waitlist(doctor_id), entry_id)
            pipe.zscore(keys.waitlist_order(doctor_id), entry_id)
            value, seq = await pipe.execute()
        return (text(value) if value is not None else None, int(seq) if seq is not None else None)

    async def hydrate(self, doctor_id: str, *, force: bool = False) -> int:
        """Rebuild one doctor's hot waitlist from the store (only while its marker is missing,
        unless ``force``). The number of entries loaded."""
        lock = self._hydrating.get(doctor_id) or self._hydrating.put(doctor_id, asyncio.Lock())
        async with lock:
            if not force and await self.ctx.redis.exists(keys.waitlist_hydrated(doctor_id)):
                return 0
            now = self.ctx.clock()
            items = await self.ctx.store.query(st.doctor_pk(doctor_id), prefix=st.PREFIX)
            entries = [e for e in (Entry.from_data(i.data) for i in items) if e.end > now]
            loaded = await self._rebuild(doctor_id, entries, force=force)
            holds = [e.offer.expires_at for e in entries if e.offer is not None]
            if holds:
                await self.index_hold(doctor_id, min(holds))
            return loaded

    async def _rebuild(self, doctor_id: str, entries: list[Entry], *, force: bool) -> int:
        d = doctor_id
        fixed = [
            keys.waitlist(d),
            keys.waitlist_order(d),
            keys.waitlist_offers(d),
            keys.waitlist_holds(d),
            keys.waitlist_hydrated(d),
        ]
        for _ in range(5):
            current = await self.ctx.redis.hgetall(keys.waitlist(d))
            extra: dict[str, int] = {}
            expiry: dict[str, int] = {}
            index = functools.partial(_key_index, extra, expiry, len(fixed))

            seen = []
            for raw_id, raw_value in current.items():
                seen.append(text(raw_id))
                w_start, w_end, patient, _ = text(raw_value).split(":")
                index(keys.waitlist_patient(d, patient))
                for day in _days(int(w_start), int(w_end)):
                    index(keys.waitlist_day(d, day), _bucket_expiry(day))
            args: list[Any] = [1 if force else 0, len(seen), *seen, len(entries)]
            for e in entries:
                days = [
                    index(keys.waitlist_day(d, day), _bucket_expiry(day))
                    for day in _days(e.start, e.end)
                ]
                passed = [index(keys.waitlist_passed(d, s)) for s in e.passed]
                args += [
                    e.id,
                    e.patient_id,
                    e.start,
                    e.end,
                    e.created_at,
                    e.seat,
                    index(keys.waitlist_patient(d, e.patient_id)),
                    len(days),
                    *days,
                    e.offer.slot_id if e.offer else "",
                    e.offer.expires_at if e.offer else "",
                    len(passed),
                    *passed,
                ]
            all_keys = fixed + list(extra)
            args += [expiry[k] for k in extra]
            result = decode(await self.ctx.scripts.rebuild(keys=all_keys, args=args))
            if result[0] == 1:
                return len(entries) if result[1] == "rebuilt" else 0
        raise Unavailable("the doctor's waitlist kept changing during rehydration")

    async def release_redis(
        self,
        doctor_id: str,
        slot_id: str,
        start: int,
        end: int,
        *,
        mode: Mode,
        ref: str,
        flag: str,
        due: bool,
        now: int,
    ) -> ReleaseReply:
        d = doctor_id
        frame = events.frames(
            [events.doctor_slots_topic(d)],
            "slot.updated",
            _slot_data(d, slot_id, start, end, "open"),
            now,
        )[0]
        for _ in range(3):
            result = await self.eval(
                self.ctx.scripts.release,
                d,
                [
                    keys.slot(d, slot_id),
                    keys.doctor_open_slots(d),
                    keys.doctor_deadlines(d),
                    keys.doctor_pending(d),
                    keys.doctor_hydrated(d),
                    keys.waitlist(d),
                    keys.waitlist_offers(d),
                    keys.waitlist_holds(d),
                    keys.waitlist_hydrated(d),
                    keys.waitlist_passed(d, slot_id),
                    keys.waitlist_day(d, day_of(start)),
                ],
                [
                    mode,
                    ref,
                    slot_id,
                    now,
                    self.ctx.hold_ms,
                    DECISION_LEAD_MS,
                    start,
                    end,
                    frame[0],
                    frame[1],
                    flag,
                    "due" if due else "",
                ],
            )
            if result[0] == 0 and result[1] == "moved":
                start, end = int(result[2]), int(result[3])
                frame = events.frames(
                    [events.doctor_slots_topic(d)],
                    "slot.updated",
                    _slot_data(d, slot_id, start, end, "open"),
                    now,
                )[0]
                continue
            return msgspec.convert(result, ReleaseReply)
        raise Unavailable("the slot kept moving", code="redis_unavailable")

    async def invalidate(self, doctor_id: str, slot_id: str) -> None:
        """Drop the doctor's markers and the slot's hash: both are rebuilt from the store."""
        try:
            await self.ctx.redis.delete(
                keys.doctor_hydrated(doctor_id),
                keys.waitlist_hydrated(doctor_id),
                keys.slot(doctor_id, slot_id),
            )
        except RedisError:
            log.error("could not invalidate doctor %s after a failed waitlist write", doctor_id)

    async def offer_of_slot(self, entry: Entry, slot_id: str) -> Offer | None:
        """The hold Redis has for ``entry`` on ``slot_id`` (the store may not have it yet)."""
        raw = await self.ctx.redis.hmget(
            keys.slot(entry.doctor_id, slot_id), "start", "end", "hold_entry", "hold_expires"
        )
        start, end, holder, expires = (text(v) for v in raw)
        if holder != entry.id or start is None:
            return None
        return Offer(slot_id=slot_id, start=int(start), end=int(end), expires_at=int(expires))

    async def index_hold(self, doctor_id: str, expires: int) -> None:
        try:
            await self.ctx.redis.zadd(keys.waitlist_sweep_index(), {doctor_id: expires}, lt=True)
        except RedisError:
            log.warning("could not index doctor %s for the hold sweep", doctor_id)
