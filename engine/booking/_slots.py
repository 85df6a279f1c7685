"""Availability: create, edit, delete and list a doctor's slots; the public agenda.

Every change goes Redis-first under a transient state that nothing can book, then to the
store, then Redis commits (and publishes ``slot.updated``) or aborts:

* create: ``create.lua`` checks overlaps (the doctor's slots, pending edits, and within the
  batch) and adds the batch as ``pending`` atomically, so two concurrent calls cannot both
  create overlapping slots; the store write follows (one transaction up to 100 slots, else
  ``put_many`` plus compensating deletes on failure); ``commit.lua`` opens them, or removes
  them if the store failed (``Unavailable``, nothing created).
* edit/delete: ``lock.lua`` takes an ``open`` slot out of reach (``Conflict`` ``slot_not_open``
  otherwise), the store write is conditioned on no hold existing for the slot, then
  ``unlock.lua`` applies or restores.

Once the store write has committed the store is the truth: if the Redis step (commit/unlock)
fails, the call still returns its result and the doctor is invalidated, its in-flight entries
for these slots dropped, so the next use rebuilds it from the store (``Rebuild.after_commit``).
A rebuild keeps every other in-flight ``pending``/``locked`` entry (rebuild.lua).
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from engine import keys
from engine.booking import _store as layout
from engine.booking._context import (
    DECISION_LEAD_MS,
    doctor_of_slot,
    lock_keys,
    redis_guard,
    slot_not_found,
)
from engine.booking._model import (
    MOVE_SUFFIX,
    Agenda,
    Price,
    PublicSlot,
    Slot,
    SlotPage,
    SlotView,
)
from engine.booking._rules import MAX_SLOT_MS, expand_rule, explicit_slots, interval
from engine.booking._time_off import time_off_ranges
from engine.errors import Conflict, Invalid, Unavailable
from engine.paging import check_limit, decode_cursor, encode_cursor, invalid_cursor
from engine.realtime import events
from engine.store import MAX_TRANSACT, ConditionFailed, Delete, Put, StoreUnavailable
from engine.timeutil import new_id, parse_rfc3339, to_rfc3339

if TYPE_CHECKING:
    from engine.booking._context import BookingContext
    from engine.booking._model import CreateSlots
    from engine.principal import Principal
    from engine.store import Op

log = logging.getLogger("healthmed.booking")

DAY_MS = 86_400_000
AGENDA_DEFAULT_DAYS = 14
AGENDA_MAX_DAYS = 62
OWN_MAX_DAYS = 366


def _doctor(principal: Principal) -> str:
    return principal.require("doctor").user_id


def time_range(
    start: str | None, end: str | None, now: int, *, default_days: int, max_days: int
) -> tuple[int, int]:
    """``from``/``to`` query values as ms: defaults ``now`` .. + ``default_days``; ``Invalid`` when
    ``to`` is not after ``from`` or the range is longer than ``max_days``."""
    lo = parse_rfc3339(start, field="from") if start is not None else now
    hi = parse_rfc3339(end, field="to") if end is not None else lo + default_days * DAY_MS
    if hi <= lo:
        raise Invalid("to must be after from", code="invalid_range")
    if hi - lo > max_days * DAY_MS:
        raise Invalid(f"the range spans at most {max_days} days", code="range_too_long")
    return lo, hi


_PAGE_SLACK = 8
"""Index entries read past a page's end: transient entries (pending, an edit's ``~`` mark)
are skipped without a second round."""
_CURSOR = "slots:"


def _encode_cursor(start: int) -> str:
    return encode_cursor(f"{_CURSOR}{start}")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = decode_cursor(cursor).decode()
    except (Invalid, UnicodeDecodeError):
        raw = ""
    value = raw.removeprefix(_CURSOR)
    if not raw.startswith(_CURSOR) or not value.isdigit() or len(value) > 15:
        raise invalid_cursor()
    return int(value)


class _KeepPending(Unavailable):
    """The store may hold part of a batch: Redis must be rebuilt from the store (see above)."""


class Finish(StrEnum):
    """How commit.lua finishes a created batch."""

    COMMIT = "commit"
    """The store has the slots: open them."""
    ABORT = "abort"
    """The store write failed: remove them."""


class Change(StrEnum):
    """What lock.lua locks an open slot for, and how unlock.lua ends the lock."""

    EDIT = "edit"
    DELETE = "delete"
    ABORT = "abort"
    """(unlock only) the store write failed: restore the open slot unchanged."""


class Slots:
    """A doctor's availability (see the module docstring)."""

    def __init__(self, ctx: BookingContext) -> None:
        self.ctx = ctx

    # --- create -------------------------------------------------------------------------------
    @redis_guard
    async def create(self, principal: Principal, body: CreateSlots) -> list[SlotView]:
        """All or nothing: ``Invalid`` input, ``Conflict`` ``slot_overlap`` for any overlap,
        ``Unavailable`` if the store fails (nothing created)."""
        doctor_id = _doctor(principal)
        now = self.ctx.clock()
        if (body.slots is None) == (body.rule is None):
            raise Invalid("give either slots or rule", code="invalid_slots")
        off = await time_off_ranges(self.ctx.store, doctor_id, now)
        if body.slots is not None:
            intervals = explicit_slots(body.slots, now, off)
            if not intervals:
                return []  # every one lies in time off: skipped, nothing to create
        else:
            assert body.rule is not None
            profile = await self.ctx.accounts.get_doctor(doctor_id)
            intervals = expand_rule(
                body.rule, now=now, uf=str(profile.uf), off=off,
                default_timezone=str(profile.timezone),
            )  # fmt: skip
        intervals.sort()
        slots = [
            Slot(id=f"{doctor_id}.{new_id()}", doctor_id=doctor_id, start=s, end=e)
            for s, e in intervals
        ]
        args: list[Any] = [self.ctx.settings.max_future_slots, len(slots), now]
        for slot in slots:
            args += [slot.id, slot.start, slot.end, to_rfc3339(slot.start), to_rfc3339(slot.end)]
        slot_keys = [keys.slot(doctor_id, s.id) for s in slots]
        created = await self.ctx.doctor_eval(
            self.ctx.scripts.create,
            doctor_id,
            [keys.doctor_slots(doctor_id), keys.doctor_slot_ends(doctor_id),
             keys.doctor_hydrated(doctor_id), *slot_keys],
            args,
        )  # fmt: skip
        if not created.ok and created.outcome == "slot_limit":
            raise Conflict(
                f"a doctor holds at most {self.ctx.settings.max_future_slots} future slots; "
                "none was created",
                code="slot_limit",
                limit=self.ctx.settings.max_future_slots,
                future_slots=created.future_slots,
            )
        if not created.ok:
            other = created.overlapping
            raise Conflict(
                "the slots overlap each other or an existing slot; none was created",
                code="slot_overlap",
                conflicting_slot_id=None if other.startswith("~") else other,
            )
        try:
            await self._store_new_slots(slots)
        except _KeepPending:
            # The store may hold part of the batch: drop the pending batch and the doctor's
            # marker, so the next use rebuilds the doctor from what the store holds.
            await self.ctx.rebuild.invalidate(doctor_id, [s.id for s in slots])
            raise
        except (StoreUnavailable, ConditionFailed) as exc:
            await self._finish_create(doctor_id, slots, Finish.ABORT, now)
            raise Unavailable("the slots could not be stored; none was created") from exc
        except BaseException:
            await self._finish_create(doctor_id, slots, Finish.ABORT, now)
            raise
        await self.ctx.rebuild.after_commit(
            doctor_id,
            self._finish_create(doctor_id, slots, Finish.COMMIT, now),
            [s.id for s in slots],
        )
        return [s.view() for s in slots]

    async def _store_new_slots(self, slots: list[Slot]) -> None:
        """Up to 100 slots: one transaction (each ``absent``). More cannot be one DynamoDB
        transaction: idempotent ``put_many``, and on failure delete what may have landed
        (compensation). If the compensation fails too (``_KeepPending``), the caller drops the
        pending slots and invalidates the doctor, whose next use rebuilds it from whatever the
        store holds."""
        items = [layout.slot_item(s) for s in slots]
        if len(items) <= MAX_TRANSACT:
            await self.ctx.store.transact([Put(item=item, expect="absent") for item in items])
            return
        try:
            await self.ctx.store.put_many(items)
        except StoreUnavailable:
            try:
                for i in range(0, len(items), MAX_TRANSACT):
                    chunk: list[Op] = [
                        Delete(pk=it.pk, sk=it.sk) for it in items[i : i + MAX_TRANSACT]
                    ]
                    await self.ctx.store.transact(chunk)
            except StoreUnavailable:
                log.error("compensation of a partial slot batch failed; rebuilding this doctor")
                raise _KeepPending("the slots could not be stored") from None
            raise

    async def _finish_create(
        self, doctor_id: str, slots: list[Slot], finish: Finish, now: int
    ) -> None:
        waitlist = self.ctx.waitlist
        if finish is Finish.COMMIT and waitlist and await waitlist.has_waitlist(doctor_id):
            # A waitlist: each new slot goes through release.lua instead, held or opened.
            outcomes = [
                await waitlist.release(doctor_id, s.id, s.start, s.end, mode="slot", now=now)
                for s in slots
            ]
            if "already" in outcomes:  # Redis was rebuilt mid-way: load them from the store
                await self.ctx.rebuild.doctor(doctor_id, force=True)
            return
        channel = ""
        args: list[Any] = []
        for s in slots:
            channel, frame = events.slot_frame(doctor_id, s.id, s.start, s.end, "open", now)
            args += [s.id, frame]
        committed = await self.ctx.doctor_eval(
            self.ctx.scripts.commit,
            doctor_id,
            [keys.doctor_slots(doctor_id), keys.doctor_slot_ends(doctor_id),
             keys.doctor_open_slots(doctor_id), keys.doctor_hydrated(doctor_id),
             *[keys.slot(doctor_id, s.id) for s in slots]],
            [finish, now, channel, len(slots), *args],
        )  # fmt: skip
        if finish is Finish.COMMIT and committed.missing > 0:
            # Redis was rebuilt mid-way; the store has the slots, so load them from there.
            await self.ctx.rebuild.doctor(doctor_id, force=True)

    # --- edit and delete ----------------------------------------------------------------------
    async def _lock(
        self, doctor_id: str, slot_id: str, change: Change, start: int = 0, end: int = 0
    ) -> tuple[int, int]:
        if doctor_of_slot(slot_id) != doctor_id:
            raise slot_not_found()
        locked = await self.ctx.doctor_eval(
            self.ctx.scripts.lock,
            doctor_id,
            lock_keys(doctor_id, slot_id),
            [slot_id, change, start, end, MAX_SLOT_MS],
        )
        if not locked.ok:
            if locked.outcome == "not_found":
                raise slot_not_found()
            if locked.outcome == "slot_overlap":
                raise Conflict("the new times overlap another slot", code="slot_overlap")
            raise Conflict("only an open slot can be changed", code="slot_not_open")
        return locked.start, locked.end

    async def _unlock(
        self, doctor_id: str, slot_id: str, change: Change, frame: tuple[str, bytes] | None,
        now: int, start: int = 0, end: int = 0,
    ) -> None:  # fmt: skip
        channel, payload = frame or ("", b"")
        unlocked = await self.ctx.doctor_eval(
            self.ctx.scripts.unlock,
            doctor_id,
            lock_keys(doctor_id, slot_id),
            [slot_id, change, now, channel, payload,
             to_rfc3339(start) if start else "", to_rfc3339(end) if end else ""],
        )  # fmt: skip
        if not unlocked.ok and change is not Change.ABORT:
            await self.ctx.rebuild.doctor(doctor_id, force=True)

    @redis_guard
    async def update(
        self, principal: Principal, slot_id: str, start_s: str, end_s: str
    ) -> SlotView:
        """Move an open slot (``Conflict`` ``slot_not_open`` otherwise; overlap-checked)."""
        doctor_id = _doctor(principal)
        now = self.ctx.clock()
        start, end = interval(start_s, end_s, now)
        old_start, old_end = await self._lock(doctor_id, slot_id, Change.EDIT, start, end)
        old = Slot(id=slot_id, doctor_id=doctor_id, start=old_start, end=old_end)
        new = Slot(id=slot_id, doctor_id=doctor_id, start=start, end=end)
        ops: list[Op] = [layout.hold_check_absent(doctor_id, slot_id)]
        if old_start == start:
            ops.append(Put(item=layout.slot_item(new), expect="present"))
        else:
            old_item = layout.slot_item(old)
            ops += [
                Delete(pk=old_item.pk, sk=old_item.sk, expect="present"),
                Put(item=layout.slot_item(new), expect="absent"),
            ]
        # Built before the write: nothing that can fail may sit between write and unlock.
        frame = events.slot_frame(doctor_id, slot_id, start, end, "open", now)
        await self._locked_write(doctor_id, slot_id, ops, now)
        edited = await self.ctx.rebuild.after_commit(
            doctor_id,
            self._unlock(doctor_id, slot_id, Change.EDIT, frame, now, start, end),
            [slot_id],
        )
        waitlist = self.ctx.waitlist
        if edited and waitlist and await waitlist.has_waitlist(doctor_id):
            # Its new times may lie in a waiting patient's window: release.lua decides.
            await waitlist.release(doctor_id, slot_id, start, end, mode="slot", now=now)
        return new.view()

    @redis_guard
    async def delete(self, principal: Principal, slot_id: str) -> None:
        """Remove an open slot (``Conflict`` ``slot_not_open`` otherwise)."""
        doctor_id = _doctor(principal)
        now = self.ctx.clock()
        start, end = await self._lock(doctor_id, slot_id, Change.DELETE)
        item = layout.slot_item(Slot(id=slot_id, doctor_id=doctor_id, start=start, end=end))
        ops: list[Op] = [
            layout.hold_check_absent(doctor_id, slot_id),
            Delete(pk=item.pk, sk=item.sk, expect="present"),
        ]
        await self._locked_write(doctor_id, slot_id, ops, now)
        frame = events.slot_frame(doctor_id, slot_id, start, end, "removed", now)
        await self.ctx.rebuild.after_commit(
            doctor_id, self._unlock(doctor_id, slot_id, Change.DELETE, frame, now), [slot_id]
        )

    async def _locked_write(self, doctor_id: str, slot_id: str, ops: list[Op], now: int) -> None:
        try:
            await self.ctx.store.transact(ops)
        except ConditionFailed as exc:
            await self._unlock(doctor_id, slot_id, Change.ABORT, None, now)
            # The store disagrees with Redis (a hold exists, or the slot is gone): trust it.
            await self.ctx.rebuild.doctor(doctor_id, force=True)
            raise Conflict("only an open slot can be changed", code="slot_not_open") from exc
        except BaseException:
            await self._unlock(doctor_id, slot_id, Change.ABORT, None, now)
            raise

    # --- reading ------------------------------------------------------------------------------
    async def read(self, doctor_id: str, lo: int, hi: int) -> list[Slot]:
        """The doctor's committed slots starting in [lo, hi), rebuilding the doctor if needed.
        ``locked`` (mid edit/delete) reads as open; ``pending`` (uncommitted) is left out."""
        slots, _, _ = await self._read(doctor_id, lo, hi, None)
        return slots

    async def read_page(
        self, doctor_id: str, lo: int, hi: int, after: int | None, limit: int
    ) -> tuple[list[Slot], bool]:
        """At most ``limit`` slots as ``read`` finds them, starting after ``after`` (a start,
        exclusive: a doctor's committed slots never share a start), and whether more follow.
        Each round reads a bounded run of the index (``ZRANGEBYSCORE ... LIMIT``)."""
        floor: int | str = f"({after}" if after is not None and after >= lo else lo
        out: list[Slot] = []
        while True:
            want = limit + 1 - len(out) + _PAGE_SLACK
            slots, seen, last = await self._read(doctor_id, floor, hi, want)
            out += slots
            if len(out) > limit:
                return out[:limit], True
            if seen < want:
                return out, False
            floor = f"({last}"

    async def _read(
        self, doctor_id: str, lo: int | str, hi: int, count: int | None
    ) -> tuple[list[Slot], int, int]:
        """``read`` over at most ``count`` index entries from ``lo`` (a score, or ``(score``
        exclusive): the slots, the entries seen and the last entry's score."""
        await self.ctx.rebuild.check_stale(doctor_id)
        for _ in range(3):
            first = 0 if count is not None else None
            async with self.ctx.redis.pipeline(transaction=False) as pipe:
                pipe.exists(keys.doctor_hydrated(doctor_id))
                pipe.zrangebyscore(
                    keys.doctor_slots(doctor_id), lo, f"({hi}", first, count, withscores=True
                )
                hydrated, entries = await pipe.execute()
            if not hydrated:
                await self.ctx.rebuild.doctor(doctor_id)
                continue
            last = int(entries[-1][1]) if entries else 0
            ids = [m.decode() for m, _ in entries if not m.startswith(b"~")]
            if not ids:
                return [], len(entries), last
            reply = await self.ctx.eval(
                self.ctx.scripts.window, [keys.slot(doctor_id, slot_id) for slot_id in ids], []
            )
            return self._slots(doctor_id, ids, reply.slots), len(entries), last
        raise Unavailable("the doctor's agenda could not be loaded", code="redis_unavailable")

    @staticmethod
    def _slots(doctor_id: str, ids: list[str], rows: list[str]) -> list[Slot]:
        """The committed slots among window.lua's rows (``pending`` and vanished ones left
        out, ``locked`` read as open)."""
        out: list[Slot] = []
        for slot_id, row in zip(ids, rows, strict=True):
            state, start, end, appt, entry, holder, expires = row.split("\t")
            if not state or state == "pending":
                continue
            held = state == "held"  # a waitlist hold (engine/waitlist/release.lua)
            out.append(
                Slot(
                    id=slot_id,
                    doctor_id=doctor_id,
                    start=int(start),
                    end=int(end),
                    status="open" if state == "locked" else state,  # type: ignore[arg-type]
                    # a pending move's slot is held by "<appointment id>~m" (_moves)
                    appointment_id=appt.removesuffix(MOVE_SUFFIX) if appt and not held else None,
                    patient_id=holder if held and holder else None,
                    hold_entry_id=entry if held and entry else None,
                    hold_expires_at=int(expires) if held and expires else None,
                )
            )
        return out

    @redis_guard
    async def list_own(
        self, principal: Principal, start: str | None, end: str | None
    ) -> list[SlotView]:
        """The doctor's own slots with full status; default from now, 62 days."""
        doctor_id = _doctor(principal)
        lo, hi = time_range(
            start, end, self.ctx.clock(), default_days=AGENDA_MAX_DAYS, max_days=OWN_MAX_DAYS
        )
        return [s.view() for s in await self.read(doctor_id, lo, hi)]

    @redis_guard
    async def own_page(
        self,
        principal: Principal,
        start: str | None,
        end: str | None,
        *,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SlotPage:
        """``list_own`` a page at a time, in start order: ``limit`` 1-100 (``Invalid``
        ``invalid_limit``), ``next_cursor`` while more remain (``invalid_cursor`` if garbled)."""
        doctor_id = _doctor(principal)
        check_limit(limit)
        lo, hi = time_range(
            start, end, self.ctx.clock(), default_days=AGENDA_MAX_DAYS, max_days=OWN_MAX_DAYS
        )
        after = _decode_cursor(cursor) if cursor else None
        slots, more = await self.read_page(doctor_id, lo, hi, after, limit)
        next_cursor = _encode_cursor(slots[-1].start) if more and slots else None
        return SlotPage(items=[s.view() for s in slots], next_cursor=next_cursor)

    @redis_guard
    async def agenda(self, doctor_id: str, start: str | None, end: str | None) -> Agenda:
        """A doctor's public agenda with the price: ``open`` (bookable now) or ``taken``; 14
        days by default, at most 62 (``Invalid`` beyond)."""
        lo, hi = time_range(
            start, end, self.ctx.clock(), default_days=AGENDA_DEFAULT_DAYS, max_days=AGENDA_MAX_DAYS
        )
        profile = await self.ctx.accounts.get_doctor(doctor_id)
        slots = await self.read(doctor_id, lo, hi)
        # Requests close DECISION_LEAD_MS before the start (reserve.lua): such a slot is no
        # longer open to anyone, whether or not someone holds it.
        bookable_after = self.ctx.clock() + DECISION_LEAD_MS
        return Agenda(
            doctor_id=doctor_id,
            timezone=str(profile.timezone),
            price=Price(
                amount_cents=int(profile.price.amount_cents), currency=str(profile.price.currency)
            ),
            slots=[
                PublicSlot(
                    id=s.id,
                    start=to_rfc3339(s.start),
                    end=to_rfc3339(s.end),
                    status="open" if s.status == "open" and s.start > bookable_after else "taken",
                )
                for s in slots
            ],
        )
