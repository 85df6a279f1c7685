"""Waitlist entries: create (add.lua's atomic overlap check, then the store with a seat guard:
``USER#<patient>/WAIT#<seat>`` created ``absent``, so the per-patient limit holds under any
concurrency), list (the patient's with positions and offers, the doctor's in FCFS order),
delete and decline (a held slot passes on at once), LGPD export and erasure.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

import msgspec

from engine.errors import Conflict, Invalid, NotFound
from engine.paging import check_limit, decode_cursor, encode_cursor, invalid_cursor
from engine.store import ConditionFailed, Put
from engine.timeutil import new_id, parse_rfc3339
from engine.waitlist import _store as layout
from engine.waitlist._context import DAY_MS, MAX_WINDOW_DAYS
from engine.waitlist._handover import passed_with
from engine.waitlist._model import (
    DoctorEntryPage,
    DoctorEntryView,
    Entry,
    EntryList,
    EntryView,
    doctor_entry_view,
    entry_view,
)
from engine.waitlist._scripts import How

if TYPE_CHECKING:
    from engine.principal import Principal
    from engine.store import Item, Op
    from engine.waitlist._context import WaitlistContext
    from engine.waitlist._handover import Handover
    from engine.waitlist._hot import HotWaitlist
    from engine.waitlist._model import CreateEntry

log = logging.getLogger("healthmed.waitlist")
_DOCTOR_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


def _patient(principal: Principal) -> str:
    return principal.require("patient").user_id


def _encode_cursor(sk: str, position: int) -> str:
    return encode_cursor(f"{position}|{sk}")


def _decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        position, _, sk = decode_cursor(cursor).decode().partition("|")
        if not sk.startswith(layout.PREFIX):
            raise ValueError(sk)
        return sk, int(position)
    except (UnicodeDecodeError, ValueError):
        raise invalid_cursor() from None


class Entries:
    """What patients and doctors do with entries."""

    def __init__(self, ctx: WaitlistContext, hot: HotWaitlist, handover: Handover) -> None:
        self.ctx = ctx
        self.hot = hot
        self.handover = handover

    async def create(self, principal: Principal, body: CreateEntry) -> EntryView:
        """Wait for a doctor within ``[from, to)``: ``Invalid`` for a window in the past, inverted
        or longer than 62 days; ``NotFound`` for an unknown doctor; ``Conflict`` ``waitlist_limit``
        past the patient's limit, ``already_waiting`` for an overlapping entry at this doctor."""
        patient_id = _patient(principal)
        now = self.ctx.clock()
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
        await self.ctx.doctors.get_doctor(doctor_id)  # NotFound for an unknown doctor
        for _ in range(3):
            seats = await self._active_seats(patient_id, now)
            free = sorted(
                set(range(self.ctx.limit)) - {int(s.sk.removeprefix(layout.PREFIX)) for s in seats}
            )
            if not free:
                raise Conflict(
                    f"you already wait in {self.ctx.limit} lists; leave one first",
                    code="waitlist_limit",
                    limit=self.ctx.limit,
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
            entry = msgspec.structs.replace(entry, created_at=await self.hot.add(entry))
            try:
                await self.ctx.store.transact(
                    [
                        Put(item=layout.entry_item(entry), expect="absent"),
                        Put(item=layout.seat_item(entry), expect="absent"),
                    ]
                )
            except ConditionFailed:
                await self.hot.forget(entry)
                continue  # another of the patient's calls took that seat meanwhile
            except BaseException:
                await asyncio.shield(self._forget_quietly(entry))
                raise
            position = await self.hot.position(entry)
            return entry_view(entry, position)
        raise Conflict(
            "the waitlist changed meanwhile; retry", code="waitlist_limit", limit=self.ctx.limit
        )

    async def _forget_quietly(self, entry: Entry) -> None:
        try:
            await self.hot.forget(entry)
        except Exception:
            log.warning("could not forget waitlist entry %s", entry.id, exc_info=True)

    async def _active_seats(self, patient_id: str, now: int) -> list[Item]:
        """The patient's seats; entries whose window is over are removed on the way."""
        seats = await self.ctx.store.query(layout.user_pk(patient_id), prefix=layout.PREFIX)
        active = []
        for seat in seats:
            if int(seat.data.get("to", 0)) <= now:
                await self._remove_ended(seat)
            else:
                active.append(seat)
        return active

    async def _remove_ended(self, seat: Item) -> None:
        data = seat.data
        item = await self.ctx.store.get(
            layout.doctor_pk(str(data["doctor_id"])),
            layout.entry_sk(int(data["created_at"]), str(data["entry_id"])),
        )
        if item is None:
            await self.ctx.store.delete(seat.pk, seat.sk)
            return
        entry = Entry.from_data(item.data)
        await self.remove(entry, pass_on=False)

    async def entry_of(self, principal: Principal, entry_id: str) -> tuple[Entry, Item]:
        """The caller's own entry (``NotFound`` otherwise)."""
        patient_id = _patient(principal)
        for seat in await self.ctx.store.query(layout.user_pk(patient_id), prefix=layout.PREFIX):
            if seat.data.get("entry_id") == entry_id:
                item = await self.ctx.store.get(
                    layout.doctor_pk(str(seat.data["doctor_id"])),
                    layout.entry_sk(int(seat.data["created_at"]), entry_id),
                )
                if item is not None:
                    return Entry.from_data(item.data), item
        raise NotFound("waitlist entry not found", code="entry_not_found")

    async def list_own(self, principal: Principal) -> EntryList:
        """The patient's active entries with their positions and offers."""
        patient_id = _patient(principal)
        now = self.ctx.clock()
        entries = []
        for seat in await self._active_seats(patient_id, now):
            item = await self.ctx.store.get(
                layout.doctor_pk(str(seat.data["doctor_id"])),
                layout.entry_sk(int(seat.data["created_at"]), str(seat.data["entry_id"])),
            )
            if item is not None:
                entries.append(Entry.from_data(item.data))
        entries.sort(key=lambda e: (e.created_at, e.id))
        positions = [await self.hot.position(e) for e in entries]
        return EntryList(items=[entry_view(e, p) for e, p in zip(entries, positions, strict=True)])

    async def list_doctor(
        self, principal: Principal, *, limit: int = 20, cursor: str | None = None
    ) -> DoctorEntryPage:
        """The doctor's own waitlist in FCFS order (``limit`` 1-100, ``next_cursor``)."""
        principal.require("doctor")
        check_limit(limit)
        after, position = _decode_cursor(cursor) if cursor else (None, 0)
        now = self.ctx.clock()
        items: list[DoctorEntryView] = []
        last_sk = None
        more = False
        while True:
            batch = await self.ctx.store.query(
                layout.doctor_pk(principal.user_id),
                prefix=layout.PREFIX,
                after=after,
                limit=limit + 1,
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

    async def delete(self, principal: Principal, entry_id: str) -> None:
        """Leave the waitlist; a slot held for this entry passes on at once."""
        entry, _ = await self.entry_of(principal, entry_id)
        await self.remove(entry, pass_on=True)

    async def remove(self, entry: Entry, *, pass_on: bool) -> None:
        held = await self.hot.forget(entry)
        ops: list[Op] = list(
            layout.remove_ops(
                entry.doctor_id, entry.patient_id, entry.id, entry.created_at, entry.seat
            )
        )
        offer = entry.offer
        if offer is None and held:
            offer = await self.hot.offer_of_slot(entry, held)
        if offer is None:
            await self.ctx.store.transact(ops)
            return
        await self.handover.pass_on(
            entry.doctor_id, entry.id, offer, ops, flag=How.HAND_OVER, due=False
        )

    async def decline(self, principal: Principal, entry_id: str) -> None:
        """Decline the held slot: it passes on at once; the entry keeps waiting (that slot is
        never offered to it again). ``Conflict`` ``no_offer`` when nothing is held for it."""
        entry, item = await self.entry_of(principal, entry_id)
        offer = entry.offer
        if offer is None:
            raise Conflict("nothing is held for this entry", code="no_offer")
        passed = msgspec.structs.replace(
            entry, offer=None, passed=passed_with(entry, offer, self.ctx.clock())
        )
        ops: list[Op] = [Put(item=layout.entry_item(passed), expect=item.version)]
        await self.handover.pass_on(entry.doctor_id, entry.id, offer, ops, flag=How.PASS, due=False)

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
        for seat in await self.ctx.store.query(
            layout.user_pk(principal.user_id), prefix=layout.PREFIX
        ):
            try:
                entry, _ = await self.entry_of(principal, str(seat.data.get("entry_id", "")))
            except NotFound:
                await self.ctx.store.delete(seat.pk, seat.sk)
                continue
            await self.remove(entry, pass_on=True)
