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
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import RedisError

from engine import keys
from engine.cache import BoundedCache
from engine.errors import Conflict, Unavailable
from engine.lua import text
from engine.realtime import events
from engine.waitlist import _store as layout
from engine.waitlist._context import DAY_MS, DECISION_LEAD_MS
from engine.waitlist._model import Entry, Offer

if TYPE_CHECKING:
    from engine.lua import Reply, Script
    from engine.waitlist._context import WaitlistContext
    from engine.waitlist._scripts import Freed, How, ReleaseReply

    R = TypeVar("R", bound=Reply)

log = logging.getLogger("healthmed.waitlist")


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


def _entry_keys(entry: Entry, *middle: str) -> list[str]:
    """KEYS of add.lua and forget.lua: the doctor's waitlist hash and order, the patient's
    entries there, ``middle``, then the day buckets of the entry's window."""
    d = entry.doctor_id
    return [
        keys.waitlist(d),
        keys.waitlist_order(d),
        keys.waitlist_patient(d, entry.patient_id),
        *middle,
        *(keys.waitlist_day(d, day) for day in _days(entry.start, entry.end)),
    ]


class HotWaitlist:
    """Redis side of the waitlist: one doctor's scripts, positions, rebuilds."""

    def __init__(self, ctx: WaitlistContext) -> None:
        self.ctx = ctx
        self._hydrating: BoundedCache[str, asyncio.Lock] = BoundedCache(10_000)
        """A lock per doctor: it only deduplicates rebuilds, so forgetting one is harmless."""

    async def eval(self, script: Script[R], doctor_id: str, keys_: list[str], args: list[Any]) -> R:
        """Run a doctor's script, rebuilding the slots or the waitlist first if it says so."""
        for _ in range(4):
            try:
                reply = await script.run(keys_, args)
            except RedisError as exc:
                raise Unavailable("redis failed", code="redis_unavailable") from exc
            if reply.ok:
                return reply
            if reply.outcome == "not_hydrated" and script is self.ctx.scripts.release:
                await self.ctx.slots.rebuild_doctor(doctor_id)
            elif reply.outcome in ("not_hydrated", "not_hydrated_waitlist"):
                await self.hydrate(doctor_id)
            else:
                return reply
        raise Unavailable("the doctor's waitlist could not be loaded", code="redis_unavailable")

    async def forget(self, entry: Entry) -> str:
        """Remove the entry from the hot waitlist; the slot it held ("" if none)."""
        d = entry.doctor_id
        reply = await self.eval(
            self.ctx.scripts.forget,
            d,
            _entry_keys(entry, keys.waitlist_offers(d), keys.waitlist_holds(d)),
            [entry.id, len(_days(entry.start, entry.end))],
        )
        return reply.slot

    async def add(self, entry: Entry) -> int:
        """Add the entry (add.lua); its FCFS seq (its ``created_at`` from then on)."""
        days = _days(entry.start, entry.end)
        reply = await self.eval(
            self.ctx.scripts.add,
            entry.doctor_id,
            _entry_keys(entry, keys.waitlist_hydrated(entry.doctor_id)),
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
        if not reply.ok:
            raise Conflict(
                "you already wait for this doctor in an overlapping window",
                code="already_waiting",
                entry_id=reply.other,
            )
        return reply.seq

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
            items = await self.ctx.store.query(layout.doctor_pk(doctor_id), prefix=layout.PREFIX)
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
            try:
                reply = await self.ctx.scripts.rebuild.run(all_keys, args)
            except RedisError as exc:
                raise Unavailable("redis failed", code="redis_unavailable") from exc
            if reply.ok:
                return len(entries) if reply.outcome == "rebuilt" else 0
        raise Unavailable("the doctor's waitlist kept changing during rehydration")

    async def release_redis(
        self,
        doctor_id: str,
        slot_id: str,
        start: int,
        end: int,
        *,
        mode: Freed,
        ref: str,
        flag: How,
        due: bool,
        now: int,
    ) -> ReleaseReply:
        """Run release.lua for the slot (its times as the caller believes them; retried with
        Redis's own if they moved)."""
        d = doctor_id
        for _ in range(3):
            channel, frame = events.slot_frame(d, slot_id, start, end, "open", now)
            reply = await self.eval(
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
                    channel,
                    frame,
                    flag,
                    "due" if due else "",
                ],
            )
            if reply.outcome != "moved":
                return reply
            start, end = reply.start, reply.end
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

    async def slot_hold(self, doctor_id: str, slot_id: str) -> tuple[Offer, str] | None:
        """The slot as Redis has it, as an offer (expiry 0 if not held), and the entry holding
        it ("" if none); None if Redis does not have the slot."""
        raw = await self.ctx.redis.hmget(
            keys.slot(doctor_id, slot_id), "start", "end", "hold_entry", "hold_expires"
        )
        start, end, holder, expires = (None if v is None else text(v) for v in raw)
        if start is None or end is None:
            return None
        offer = Offer(slot_id=slot_id, start=int(start), end=int(end), expires_at=int(expires or 0))
        return offer, holder or ""

    async def offer_of_slot(self, entry: Entry, slot_id: str) -> Offer | None:
        """The hold Redis has for ``entry`` on ``slot_id`` (the store may not have it yet)."""
        found = await self.slot_hold(entry.doctor_id, slot_id)
        return found[0] if found is not None and found[1] == entry.id else None

    async def index_hold(self, doctor_id: str, expires: int) -> None:
        try:
            await self.ctx.redis.zadd(keys.waitlist_sweep_index(), {doctor_id: expires}, lt=True)
        except RedisError:
            log.warning("could not index doctor %s for the hold sweep", doctor_id)
