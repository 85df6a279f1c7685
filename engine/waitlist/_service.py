"""The waitlist service: entries, holds and their hand-over (API.md "Waitlist").

Order of every change (as a reservation's): Redis decides in one script on the doctor's hash
tag, the store records the outcome in one transaction, then the events go out.

* An entry is added by add.lua (atomic overlap check among the patient's entries at this
  doctor), then stored with its seat (``USER#<patient>/WAIT#<seat>``, created ``absent``: at
  most ``waitlist_limit`` seats, whatever the concurrency). If the store fails, the entry is
  forgotten in Redis again.
* A slot that becomes free goes through :meth:`WaitlistService.release` (release.lua): held
  for the earliest covering entry, or opened. The outcome is stored in one transaction: the
  slot item (``held`` or ``open``) together with the entries' ``offer`` fields, so in the
  store a slot is held for an entry exactly when that entry's offer names it. A process that
  dies between the script and the store write leaves Redis holding the slot with an expiry in
  the holds set, so the hold lapses and passes on; a store write that fails invalidates the
  doctor (slots and waitlist are rebuilt from the store on next use).
* Lapsed holds are swept like decision deadlines: each doctor's holds sorted set (entry ->
  expiry) under its tag, a global index of doctors by earliest expiry, lapse.lua claims due
  holds with a lease.

A doctor without a waitlist pays one ``EXISTS`` and one ``HLEN`` inside the release script,
and nothing on reservations (reserve.lua reads the hold fields only for a slot not open).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import random
import re
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec
from redis.exceptions import RedisError

from engine import keys
from engine.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from engine.realtime import events
from engine.store import ConditionFailed, Put, StoreUnavailable
from engine.timeutil import new_id, now_ms, parse_rfc3339, to_rfc3339
from engine.waitlist import _store as st
from engine.waitlist._model import (
    DoctorEntryPage,
    DoctorEntryView,
    Entry,
    EntryList,
    EntryView,
    Offer,
    OfferedEvent,
    OfferSlot,
    doctor_entry_view,
    entry_view,
)
from engine.waitlist._scripts import ForgetReply, ReleaseReply, Scripts, decode, text

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

    from engine.config import Settings
    from engine.notifications import Outbox
    from engine.principal import Principal
    from engine.store import Item, Op, Store
    from engine.waitlist._model import CreateEntry

log = logging.getLogger("healthmed.waitlist")

DAY_MS = 86_400_000
MAX_WINDOW_DAYS = 62
DECISION_LEAD_MS = 15 * 60_000
"""Requests close this long before a slot starts (booking's reserve.lua): no hold past it."""
LAPSE_LEASE_MS = 30_000
REINDEX_SECONDS = 300.0
_DOCTOR_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
Mode = Literal["appt", "hold", "slot"]


class SlotsPort(Protocol):
    """What the waitlist needs from booking (:class:`engine.booking.BookingService`)."""

    async def hydrate_doctor(self, doctor_id: str, *, force: bool = False) -> int: ...


class DoctorsPort(Protocol):
    async def get_doctor(self, doctor_id: str) -> Any: ...


def day_of(ms: int) -> int:
    return ms // DAY_MS


def _days(start: int, end: int) -> list[int]:
    """UTC days a window ``[start, end)`` meets."""
    return list(range(day_of(start), day_of(end - 1) + 1))


def _bucket_expiry(day: int) -> int:
    """A day bucket serves slots starting that day: kept until the next day ends."""
    return (day + 2) * DAY_MS


def _encode_cursor(sk: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{position}|{sk}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        position, _, sk = raw.partition("|")
        if not sk.startswith(st.PREFIX):
            raise ValueError(sk)
        return sk, int(position)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Invalid("invalid cursor", code="invalid_cursor") from None


class WaitlistService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        redis: Redis,
        doctors: DoctorsPort,
        slots: SlotsPort,
        *,
        outbox: Outbox | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.redis = redis
        self.doctors = doctors
        self.slots = slots
        self.outbox = outbox
        self.clock = clock
        self.scripts = Scripts(redis)
        self.hold_ms = settings.waitlist_hold_seconds * 1000
        self.limit = settings.waitlist_limit
        self.sweep_interval = float(settings.sweep_interval_seconds)
        self._hydrating: dict[str, asyncio.Lock] = {}

    # --- scripts ------------------------------------------------------------------------------
    async def _eval(
        self, script: AsyncScript, doctor_id: str, keys_: list[str], args: list[Any]
    ) -> list[Any]:
        """Run a doctor's script, rebuilding the slots or the waitlist first if it says so."""
        for _ in range(4):
            try:
                result = decode(await script(keys=keys_, args=args))
            except RedisError as exc:
                raise Unavailable("redis failed", code="redis_unavailable") from exc
            if result[0] == 0 and result[1] == "not_hydrated":
                if script is self.scripts.release:
                    await self.slots.hydrate_doctor(doctor_id)
                else:
                    await self.hydrate(doctor_id)
                continue
            if result[0] == 0 and result[1] == "not_hydrated_waitlist":
                await self.hydrate(doctor_id)
                continue
            return result
        raise Unavailable("the doctor's waitlist could not be loaded", code="redis_unavailable")

    @staticmethod
    def _entry_keys(doctor_id: str, patient_id: str, start: int, end: int) -> list[str]:
        return [keys.waitlist_day(doctor_id, d) for d in _days(start, end)]

    async def _forget(self, entry: Entry) -> str:
        """Remove the entry from the hot waitlist; the slot it held ("" if none)."""
        d = entry.doctor_id
        result = await self._eval(
            self.scripts.forget,
            d,
            [
                keys.waitlist(d),
                keys.waitlist_order(d),
                keys.waitlist_patient(d, entry.patient_id),
                keys.waitlist_offers(d),
                keys.waitlist_holds(d),
                *self._entry_keys(d, entry.patient_id, entry.start, entry.end),
            ],
            [entry.id, len(_days(entry.start, entry.end))],
        )
        return msgspec.convert(result, ForgetReply).slot

    # --- entries ------------------------------------------------------------------------------
    async def create(self, principal: Principal, body: CreateEntry) -> EntryView:
        """Wait for a doctor within ``[from, to)``: 422 for a window in the past, inverted or
        longer than 62 days; 404 for an unknown doctor; 409 ``waitlist_limit`` past the
        patient's limit, ``already_waiting`` for an overlapping entry at this doctor."""
        patient_id = _patient(principal)
        now = self.clock()
        start = parse_rfc3339(body.from_, field="from")
        end = parse_rfc3339(body.to, field="to")
        if end <= start:
            raise Invalid("to must be after from", code="invalid_window", field="to")
        if start <= now:
            raise Invalid(
                "the window must start in the future", code="window_in_past", field="from"
            )
        if end - start > MAX_WINDOW_DAYS * DAY_MS:
            raise Invalid(
                f"a window spans at most {MAX_WINDOW_DAYS} days", code="window_too_long", field="to"
            )
        doctor_id = body.doctor_id
        if _DOCTOR_ID.fullmatch(doctor_id) is None:
            raise NotFound("doctor not found", code="doctor_not_found")
        await self.doctors.get_doctor(doctor_id)  # NotFound for an unknown doctor
        for _ in range(3):
            seats = await self._active_seats(patient_id, now)
            free = sorted(
                set(range(self.limit)) - {int(s.sk.removeprefix(st.PREFIX)) for s in seats}
            )
            if not free:
                raise Conflict(
                    f"you already wait in {self.limit} lists; leave one first",
                    code="waitlist_limit",
                    limit=self.limit,
                )
            entry = Entry(
                id=new_id(),
                doctor_id=doctor_id,
                patient_id=patient_id,
                start=start,
                end=end,
                created_at=now,
                seat=free[0],
            )
            await self._add(entry)
            try:
                await self.store.transact(
                    [
                        Put(item=st.entry_item(entry), expect="absent"),
                        Put(item=st.seat_item(entry), expect="absent"),
                    ]
                )
            except ConditionFailed:
                await self._forget(entry)
                continue  # another of the patient's calls took that seat meanwhile
            except BaseException:
                await asyncio.shield(self._forget_quietly(entry))
                raise
            position = await self._position(entry)
            return entry_view(entry, position)
        raise Conflict(
            "the waitlist changed meanwhile; retry", code="waitlist_limit", limit=self.limit
        )

    async def _add(self, entry: Entry) -> None:
        d = entry.doctor_id
        days = _days(entry.start, entry.end)
        result = await self._eval(
            self.scripts.add,
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

    async def _forget_quietly(self, entry: Entry) -> None:
        try:
            await self._forget(entry)
        except Exception:
            log.warning("could not forget waitlist entry %s", entry.id, exc_info=True)

    async def _active_seats(self, patient_id: str, now: int) -> list[Item]:
        """The patient's seats; entries whose window is over are removed on the way."""
        seats = await self.store.query(st.user_pk(patient_id), prefix=st.PREFIX)
        active = []
        for seat in seats:
            if int(seat.data.get("to", 0)) <= now:
                await self._remove_ended(seat)
            else:
                active.append(seat)
        return active

    async def _remove_ended(self, seat: Item) -> None:
        data = seat.data
        item = await self.store.get(
            st.doctor_pk(str(data["doctor_id"])),
            st.entry_sk(int(data["created_at"]), str(data["entry_id"])),
        )
        if item is None:
            await self.store.delete(seat.pk, seat.sk)
            return
        entry = Entry.from_data(item.data)
        await self._remove(entry, pass_on=False)

    async def _entry_of(self, principal: Principal, entry_id: str) -> tuple[Entry, Item]:
        """The caller's own entry (404 otherwise)."""
        patient_id = _patient(principal)
        for seat in await self.store.query(st.user_pk(patient_id), prefix=st.PREFIX):
            if seat.data.get("entry_id") == entry_id:
                item = await self.store.get(
                    st.doctor_pk(str(seat.data["doctor_id"])),
                    st.entry_sk(int(seat.data["created_at"]), entry_id),
                )
                if item is not None:
                    return Entry.from_data(item.data), item
        raise NotFound("waitlist entry not found", code="entry_not_found")

    async def list_own(self, principal: Principal) -> EntryList:
        """The patient's active entries with their positions and offers."""
        patient_id = _patient(principal)
        now = self.clock()
        entries = []
        for seat in await self._active_seats(patient_id, now):
            item = await self.store.get(
                st.doctor_pk(str(seat.data["doctor_id"])),
                st.entry_sk(int(seat.data["created_at"]), str(seat.data["entry_id"])),
            )
            if item is not None:
                entries.append(Entry.from_data(item.data))
        entries.sort(key=lambda e: (e.created_at, e.id))
        positions = [await self._position(e) for e in entries]
        return EntryList(items=[entry_view(e, p) for e, p in zip(entries, positions, strict=True)])

    async def list_doctor(
        self, principal: Principal, *, limit: int = 20, cursor: str | None = None
    ) -> DoctorEntryPage:
        """The doctor's own waitlist in FCFS order (``limit`` 1-100, ``next_cursor``)."""
        if principal.role != "doctor":
            raise Forbidden("this is for doctors", code="wrong_role")
        if not 1 <= limit <= 100:
            raise Invalid("limit must be 1 to 100", code="invalid_limit")
        after, position = _decode_cursor(cursor) if cursor else (None, 0)
        now = self.clock()
        items: list[DoctorEntryView] = []
        last_sk = None
        more = False
        while True:
            batch = await self.store.query(
                st.doctor_pk(principal.user_id), prefix=st.PREFIX, after=after, limit=limit + 1
            )
            for item in batch:
                entry = Entry.from_data(item.data)
                if entry.end <= now:
                    continue  # over; removed when its patient next looks
                if len(items) == limit:
                    more = True
                    break
                position += 1
                items.append(doctor_entry_view(entry, position))
                last_sk = item.sk
            if more or len(batch) < limit + 1:
                break
            after = batch[-1].sk
        next_cursor = _encode_cursor(last_sk, position) if more and last_sk else None
        return DoctorEntryPage(items=items, next_cursor=next_cursor)

    async def _position(self, entry: Entry) -> int:
        """1 + the entries of the doctor created before this one (FCFS rank)."""
        order = keys.waitlist_order(entry.doctor_id)
        for _ in range(2):
            try:
                rank: Any = await self.redis.zrank(order, entry.id)
            except RedisError as exc:
                raise Unavailable("redis failed", code="redis_unavailable") from exc
            if rank is not None:
                return int(rank) + 1
            await self.hydrate(entry.doctor_id)
        return 1

    async def delete(self, principal: Principal, entry_id: str) -> None:
        """Leave the waitlist; a slot held for this entry passes on at once."""
        entry, _ = await self._entry_of(principal, entry_id)
        await self._remove(entry, pass_on=True)

    async def _remove(self, entry: Entry, *, pass_on: bool) -> None:
        held = await self._forget(entry)
        ops: list[Op] = list(
            st.remove_ops(entry.doctor_id, entry.patient_id, entry.id, entry.created_at, entry.seat)
        )
        offer = entry.offer
        if offer is None and held:
            offer = await self._offer_of_slot(entry, held)
        if offer is None:
            await self.store.transact(ops)
            return
        await self._pass_on(entry, offer, ops, flag="", due=False)

    async def _offer_of_slot(self, entry: Entry, slot_id: str) -> Offer | None:
        """The hold Redis has for ``entry`` on ``slot_id`` (the store may not have it yet)."""
        raw = await self.redis.hmget(
            keys.slot(entry.doctor_id, slot_id), "start", "end", "hold_entry", "hold_expires"
        )
        start, end, holder, expires = (text(v) for v in raw)
        if holder != entry.id or start is None:
            return None
        return Offer(slot_id=slot_id, start=int(start), end=int(end), expires_at=int(expires))

    async def decline(self, principal: Principal, entry_id: str) -> None:
        """Decline the held slot: it passes on at once; the entry keeps waiting (that slot is
        never offered to it again). 409 ``no_offer`` when nothing is held for it."""
        entry, item = await self._entry_of(principal, entry_id)
        offer = entry.offer
        if offer is None:
            raise Conflict("nothing is held for this entry", code="no_offer")
        passed = msgspec.structs.replace(
            entry, offer=None, passed=_passed(entry, offer, self.clock())
        )
        ops: list[Op] = [Put(item=st.entry_item(passed), expect=item.version)]
        await self._pass_on(entry, offer, ops, flag="pass", due=False)

    async def _pass_on(
        self, entry: Entry, offer: Offer, ops: list[Op], *, flag: str, due: bool
    ) -> ReleaseReply | None:
        """Release ``entry``'s hold on ``offer``'s slot and store ``ops`` with the outcome."""
        now = self.clock()
        reply = await self._release_redis(
            entry.doctor_id,
            offer.slot_id,
            offer.start,
            offer.end,
            mode="hold",
            ref=entry.id,
            flag=flag,
            due=due,
            now=now,
        )
        if reply.outcome == "not_due":
            return reply
        await self._record(
            entry.doctor_id,
            offer.slot_id,
            offer.start,
            offer.end,
            reply,
            now,
            ops,
            slot_known_open=False,
            raise_on_failure=True,
        )
        return reply

    # --- LGPD ---------------------------------------------------------------------------------
    async def export_user(self, principal: Principal) -> dict[str, Any]:
        """``{"waitlist": [...]}``: the patient's active entries."""
        if principal.role != "patient":
            return {}
        entries = await self.list_own(principal)
        return {"waitlist": msgspec.to_builtins(entries.items)}

    async def erase_user(self, principal: Principal) -> None:
        """Leave every waitlist (held slots pass on). Idempotent."""
        if principal.role != "patient":
            return
        for seat in await self.store.query(st.user_pk(principal.user_id), prefix=st.PREFIX):
            try:
                entry, _ = await self._entry_of(principal, str(seat.data.get("entry_id", "")))
            except NotFound:
                await self.store.delete(seat.pk, seat.sk)
                continue
            await self._remove(entry, pass_on=True)

    # --- release: the one way a slot becomes free ---------------------------------------------
    async def release(
        self,
        doctor_id: str,
        slot_id: str,
        start: int,
        end: int,
        *,
        mode: Mode,
        ref: str = "",
        undo: bool = False,
        now: int | None = None,
        slot_known_open: bool = True,
    ) -> str:
        """Free a slot (booking's cancel, refuse, expiry, rollback: ``mode="appt"`` with the
        appointment id; a new or edited open slot: ``mode="slot"``) and hand it to the next
        entry or open it. The outcome is recorded in the store; if that fails the doctor is
        rebuilt from the store on next use (the caller's own change is already stored). Returns
        release.lua's outcome. Idempotent."""
        now = self.clock() if now is None else now
        reply = await self._release_redis(
            doctor_id,
            slot_id,
            start,
            end,
            mode=mode,
            ref=ref,
            flag="undo" if undo else "",
            due=False,
            now=now,
        )
        await self._record(
            doctor_id,
            slot_id,
            start,
            end,
            reply,
            now,
            [],
            slot_known_open=slot_known_open,
            raise_on_failure=False,
        )
        return reply.outcome

    async def _release_redis(
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
            result = await self._eval(
                self.scripts.release,
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
                    self.hold_ms,
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

    async def _record(
        self,
        doctor_id: str,
        slot_id: str,
        start: int,
        end: int,
        reply: ReleaseReply,
        now: int,
        ops: list[Op],
        *,
        slot_known_open: bool,
        raise_on_failure: bool,
    ) -> None:
        """Store what release.lua decided (with ``ops``), then publish the offer."""
        pairs: list[tuple[str, bytes]] = []
        if reply.outcome == "held":
            holder = await self.store.get(
                st.doctor_pk(doctor_id), st.entry_sk(reply.seq, reply.entry)
            )
            if holder is None:  # Redis had an entry the store does not: rebuild the doctor
                await self._invalidate(doctor_id, slot_id)
                if ops:
                    await self._transact(doctor_id, slot_id, ops, raise_on_failure)
                return
            offer = Offer(slot_id=slot_id, start=start, end=end, expires_at=reply.expires)
            entry = msgspec.structs.replace(Entry.from_data(holder.data), offer=offer)
            ops = [
                *ops,
                Put(item=st.entry_item(entry), expect=holder.version),
                st.slot_put(
                    doctor_id, slot_id, start, end, (entry.id, entry.patient_id, offer.expires_at)
                ),
                *self._offer_mail(entry, offer, now),
            ]
            data = OfferedEvent(
                entry_id=entry.id,
                slot=OfferSlot(id=slot_id, start=to_rfc3339(start), end=to_rfc3339(end)),
                hold_expires_at=to_rfc3339(offer.expires_at),
            )
            pairs += events.frames(
                [events.patient_appointments_topic(entry.patient_id)],
                "waitlist.offered",
                data,
                now,
            )
            if reply.previous == "open":  # a new or edited slot: it was published open
                pairs += events.frames(
                    [events.doctor_slots_topic(doctor_id)],
                    "slot.updated",
                    _slot_data(doctor_id, slot_id, start, end, "taken"),
                    now,
                )
        elif reply.outcome in ("opened", "freed") and not slot_known_open:
            ops = [*ops, st.slot_put(doctor_id, slot_id, start, end, None)]
        if not ops:
            return
        if not await self._transact(doctor_id, slot_id, ops, raise_on_failure):
            return
        if self.outbox is not None and reply.outcome == "held":
            self.outbox.wake()
        if reply.outcome == "held":
            await self._index_hold(doctor_id, reply.expires)
        if pairs:
            try:
                await events.publish(self.redis, pairs)
            except Exception:
                log.warning("waitlist event publication failed", exc_info=True)

    async def _transact(
        self, doctor_id: str, slot_id: str, ops: list[Op], raise_on_failure: bool
    ) -> bool:
        try:
            await self.store.transact(ops)
        except (StoreUnavailable, ConditionFailed) as exc:
            log.warning(
                "waitlist outcome of slot %s not stored; rebuilding doctor %s",
                slot_id,
                doctor_id,
                exc_info=True,
            )
            await self._invalidate(doctor_id, slot_id)
            if raise_on_failure:
                if isinstance(exc, ConditionFailed):
                    raise Conflict(
                        "the waitlist changed meanwhile; retry", code="waitlist_changed"
                    ) from exc
                raise
            return False
        return True

    async def _invalidate(self, doctor_id: str, slot_id: str) -> None:
        """Drop the doctor's markers and the slot's hash: both are rebuilt from the store."""
        try:
            await self.redis.delete(
                keys.doctor_hydrated(doctor_id),
                keys.waitlist_hydrated(doctor_id),
                keys.slot(doctor_id, slot_id),
            )
        except RedisError:
            log.error("could not invalidate doctor %s after a failed waitlist write", doctor_id)

    def _offer_mail(self, entry: Entry, offer: Offer, now: int) -> list[Op]:
        if self.outbox is None:
            return []
        context = {
            "entry_id": entry.id,
            "doctor_id": entry.doctor_id,
            "patient_id": entry.patient_id,
            "slot_id": offer.slot_id,
            "start_ms": offer.start,
            "end_ms": offer.end,
            "hold_expires_ms": offer.expires_at,
            "role": "patient",
        }
        ops: list[Op] = list(
            self.outbox.put_ops(
                "waitlist.offered",
                entry.patient_id,
                context,
                key=f"{entry.id}:{offer.slot_id}:{offer.expires_at}",
                at=now,
            )
        )
        return ops

    async def _index_hold(self, doctor_id: str, expires: int) -> None:
        try:
            await self.redis.zadd(keys.waitlist_sweep_index(), {doctor_id: expires}, lt=True)
        except RedisError:
            log.warning("could not index doctor %s for the hold sweep", doctor_id)

    # --- booking by the holder ----------------------------------------------------------------
    async def fulfilment(self, doctor_id: str, entry_id: str) -> list[Op]:
        """Store ops removing ``entry_id`` (its holder booked the held slot), for booking to
        append to the request's transaction; none if the entry is already gone."""
        value, seq = await self._hot_entry(doctor_id, entry_id)
        if value is None or seq is None:
            return []
        _, _, patient_id, seat = value.split(":")
        return list(st.remove_ops(doctor_id, patient_id, entry_id, seq, int(seat)))

    async def fulfilled(self, doctor_id: str, entry_id: str, start: int, end: int) -> None:
        """Redis side of a fulfilment (after the request was stored): the entry leaves."""
        value, seq = await self._hot_entry(doctor_id, entry_id)
        if value is None or seq is None:
            return
        w_start, w_end, patient_id, seat = value.split(":")
        entry = Entry(
            id=entry_id,
            doctor_id=doctor_id,
            patient_id=patient_id,
            start=int(w_start),
            end=int(w_end),
            created_at=seq,
            seat=int(seat),
        )
        try:
            await self._forget(entry)
        except Unavailable:
            await self._invalidate(doctor_id, "")

    async def _hot_entry(self, doctor_id: str, entry_id: str) -> tuple[str | None, int | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.waitlist(doctor_id), entry_id)
            pipe.zscore(keys.waitlist_order(doctor_id), entry_id)
            value, seq = await pipe.execute()
        return (text(value) if value is not None else None, int(seq) if seq is not None else None)

    # --- hydration ----------------------------------------------------------------------------
    async def hydrate(self, doctor_id: str, *, force: bool = False) -> int:
        """Rebuild one doctor's hot waitlist from the store (only while its marker is missing,
        unless ``force``). The number of entries loaded."""
        lock = self._hydrating.get(doctor_id)
        if lock is None:
            if len(self._hydrating) > 10_000:
                self._hydrating.clear()
            lock = self._hydrating[doctor_id] = asyncio.Lock()
        async with lock:
            if not force and await self.redis.exists(keys.waitlist_hydrated(doctor_id)):
                return 0
            now = self.clock()
            items = await self.store.query(st.doctor_pk(doctor_id), prefix=st.PREFIX)
            entries = [e for e in (Entry.from_data(i.data) for i in items) if e.end > now]
            loaded = await self._rebuild(doctor_id, entries, force=force)
            holds = [e.offer.expires_at for e in entries if e.offer is not None]
            if holds:
                await self._index_hold(doctor_id, min(holds))
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
            current = await self.redis.hgetall(keys.waitlist(d))
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
            result = decode(await self.scripts.rebuild(keys=all_keys, args=args))
            if result[0] == 1:
                return len(entries) if result[1] == "rebuilt" else 0
        raise Unavailable("the doctor's waitlist kept changing during rehydration")

    # --- lapse sweep --------------------------------------------------------------------------
    async def sweep_once(self, *, max_doctors: int = 100, max_items: int = 50) -> int:
        """Pass on every lapsed hold of up to ``max_doctors`` doctors; the number passed on."""
        now = self.clock()
        index = keys.waitlist_sweep_index()
        due = await self.redis.zrangebyscore(index, "-inf", now, 0, max_doctors)
        passed = 0
        for raw in due:
            doctor_id = text(raw)
            holds = keys.waitlist_holds(doctor_id)
            result = await self._eval(
                self.scripts.lapse,
                doctor_id,
                [holds, keys.waitlist_offers(doctor_id), keys.waitlist_hydrated(doctor_id)],
                [now, LAPSE_LEASE_MS, max_items],
            )
            claimed = result[2:]
            for i in range(0, len(claimed), 2):
                try:
                    if await self._lapse(doctor_id, str(claimed[i]), str(claimed[i + 1])):
                        passed += 1
                except Exception:
                    log.warning(
                        "lapse of hold %s failed; retried after the lease",
                        claimed[i],
                        exc_info=True,
                    )
            first = await self.redis.zrange(holds, 0, 0, withscores=True)
            if first:
                await self.redis.zadd(index, {doctor_id: first[0][1]})
            else:
                await self.redis.zrem(index, doctor_id)
            again = await self.redis.zrange(holds, 0, 0, withscores=True)
            if again:
                await self.redis.zadd(index, {doctor_id: again[0][1]}, lt=True)
        return passed

    async def _lapse(self, doctor_id: str, entry_id: str, slot_id: str) -> bool:
        _, seq = await self._hot_entry(doctor_id, entry_id)
        raw = await self.redis.hmget(
            keys.slot(doctor_id, slot_id), "start", "end", "hold_entry", "hold_expires"
        )
        start, end, _, expires = (text(v) for v in raw)
        if start is None:
            await self.redis.zrem(keys.waitlist_holds(doctor_id), entry_id)
            return False
        offer = Offer(slot_id=slot_id, start=int(start), end=int(end), expires_at=int(expires or 0))
        ops: list[Op] = []
        entry = None
        if seq is not None:
            item = await self.store.get(st.doctor_pk(doctor_id), st.entry_sk(seq, entry_id))
            if item is not None:
                entry = Entry.from_data(item.data)
                lapsed = msgspec.structs.replace(
                    entry, offer=None, passed=_passed(entry, offer, self.clock())
                )
                ops.append(Put(item=st.entry_item(lapsed), expect=item.version))
        if entry is None:
            entry = Entry(
                id=entry_id,
                doctor_id=doctor_id,
                patient_id="",
                start=0,
                end=0,
                created_at=0,
                seat=0,
            )
        reply = await self._pass_on(entry, offer, ops, flag="pass", due=True)
        return reply is not None and reply.outcome in ("held", "opened", "freed")

    async def reindex(self, doctor_ids: Sequence[str]) -> int:
        """Put every doctor with holds in the sweep index at its earliest expiry."""
        found = 0
        for at in range(0, len(doctor_ids), 500):
            batch = doctor_ids[at : at + 500]
            async with self.redis.pipeline(transaction=False) as pipe:
                for doctor_id in batch:
                    pipe.zrange(keys.waitlist_holds(doctor_id), 0, 0, withscores=True)
                firsts = await pipe.execute()
            earliest = {d: f[0][1] for d, f in zip(batch, firsts, strict=True) if f}
            if earliest:
                await self.redis.zadd(keys.waitlist_sweep_index(), earliest, lt=True)
                found += len(earliest)
        return found

    async def _doctor_ids(self) -> list[str]:
        """Every registered doctor, from the store's doctors index."""
        doctors = await self.store.query_index("DOCTORS")
        return sorted(
            {str(item.data.get("id") or item.pk.removeprefix("USER#")) for item in doctors}
        )

    async def run_sweeper(self) -> None:
        """Pass on lapsed holds every sweep interval until cancelled; re-index at start and
        every ``REINDEX_SECONDS`` (a hold whose index entry a crash lost)."""
        loop = asyncio.get_running_loop()
        reindex_at = loop.time()
        while True:
            try:
                if loop.time() >= reindex_at:
                    reindex_at = loop.time() + REINDEX_SECONDS * (0.75 + random.random() / 2)  # noqa: S311
                    await self.reindex(await self._doctor_ids())
                while await self.sweep_once() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("waitlist hold sweep failed", exc_info=True)
            await asyncio.sleep(self.sweep_interval)


def _key_index(
    extra: dict[str, int], expiry: dict[str, int], base: int, key: str, expires: int = 0
) -> int:
    """The KEYS index (1-based) of ``key`` among ``base`` fixed keys and ``extra``."""
    if key not in extra:
        extra[key] = base + len(extra) + 1
        expiry[key] = expires
    return extra[key]


def _patient(principal: Principal) -> str:
    if principal.role != "patient":
        raise Forbidden("this route is for patients", code="wrong_role")
    return principal.user_id


def _passed(entry: Entry, offer: Offer, now: int) -> list[str]:
    """The entry's passed slots plus this one (slots already started are dropped)."""
    kept = [s for s in entry.passed if s != offer.slot_id]
    return [*kept[-49:], offer.slot_id] if offer.start > now else kept[-50:]


def _slot_data(doctor_id: str, slot_id: str, start: int, end: int, status: str) -> dict[str, str]:
    return {
        "slot_id": slot_id,
        "doctor_id": doctor_id,
        "start": to_rfc3339(start),
        "end": to_rfc3339(end),
        "status": status,
    }
