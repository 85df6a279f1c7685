"""Availability: create, edit, delete and list a doctor's slots; the public agenda.

Every change goes Redis-first under a transient state that nothing can book, then to the
store, then Redis commits (and publishes ``slot.updated``) or aborts:

* create: ``create.lua`` checks overlaps (the doctor's slots, pending edits, and within the
  batch) and adds the batch as ``pending`` atomically, so two concurrent calls cannot both
  create overlapping slots; the store write follows (one transaction up to 100 slots, else
  ``put_many`` plus compensating deletes on failure); ``commit.lua`` opens them, or removes
  them if the store failed (503, nothing created).
* edit/delete: ``lock.lua`` takes an ``open`` slot out of reach (409 ``slot_not_open``
  otherwise), the store write is conditioned on no hold existing for the slot, then
  ``unlock.lua`` applies or restores.

Once the store write has committed the store is the truth: if the Redis step (commit/unlock)
fails, the call still returns its result and the doctor is invalidated, its in-flight entries
for these slots dropped, so the next use rebuilds it from the store (``_Core._after_commit``).
A rebuild keeps every other in-flight ``pending``/``locked`` entry (rebuild.lua).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from engine import keys
from engine.booking import _store as st
from engine.booking._core import DECISION_LEAD_MS, _Core, doctor_of_slot, redis_guard
from engine.booking._model import (
    Agenda,
    Price,
    PublicSlot,
    Slot,
    SlotView,
)
from engine.booking._rules import MAX_SLOT_MS, check_interval, expand_rule, explicit_slots
from engine.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from engine.store import MAX_TRANSACT, ConditionFailed, Delete, Put, StoreUnavailable
from engine.timeutil import new_id, parse_rfc3339, to_rfc3339

if TYPE_CHECKING:
    from engine.booking._model import CreateSlots
    from engine.principal import Principal
    from engine.store import Op

log = logging.getLogger("healthmed.booking")

DAY_MS = 86_400_000
AGENDA_DEFAULT_DAYS = 14
AGENDA_MAX_DAYS = 62
OWN_MAX_DAYS = 366


def _doctor(principal: Principal) -> str:
    if principal.role != "doctor":
        raise Forbidden("this is for doctors", code="wrong_role")
    return principal.user_id


def time_range(
    start: str | None, end: str | None, now: int, *, default_days: int, max_days: int
) -> tuple[int, int]:
    """``from``/``to`` query values as ms: defaults ``now`` .. + ``default_days``; 422 when
    ``to`` is not after ``from`` or the range is longer than ``max_days``."""
    lo = parse_rfc3339(start, field="from") if start else now
    hi = parse_rfc3339(end, field="to") if end else lo + default_days * DAY_MS
    if hi <= lo:
        raise Invalid("to must be after from", code="invalid_range")
    if hi - lo > max_days * DAY_MS:
        raise Invalid(f"the range spans at most {max_days} days", code="range_too_long")
    return lo, hi


class _KeepPending(Unavailable):
    """The store may hold part of a batch: Redis must be rebuilt from the store (see above)."""


class _Slots(_Core):
    # --- create -------------------------------------------------------------------------------
    @redis_guard
    async def create_slots(self, principal: Principal, body: CreateSlots) -> list[SlotView]:
        """All or nothing: 422 for invalid input, 409 ``slot_overlap`` for any overlap, 503 if
        the store fails (nothing created)."""
        doctor_id = _doctor(principal)
        now = self.clock()
        if (body.slots is None) == (body.rule is None):
            raise Invalid("give either slots or rule", code="invalid_slots")
        if body.slots is not None:
            intervals = explicit_slots(body.slots, now)
        else:
            assert body.rule is not None
            intervals = expand_rule(body.rule, now=now)
        intervals.sort()
        slots = [
            Slot(id=f"{doctor_id}.{new_id()}", doctor_id=doctor_id, start=s, end=e)
            for s, e in intervals
        ]
        args: list[Any] = [self.settings.max_future_slots, len(slots), now]
        for slot in slots:
            args += [slot.id, slot.start, slot.end, to_rfc3339(slot.start), to_rfc3339(slot.end)]
        slot_keys = [keys.slot(doctor_id, s.id) for s in slots]
        result = await self._doctor_eval(
            self.scripts.create,
            doctor_id,
            [keys.doctor_slots(doctor_id), keys.doctor_slot_ends(doctor_id),
             keys.doctor_hydrated(doctor_id), *slot_keys],
            args,
        )  # fmt: skip
        if result[0] == 0 and result[1] == "slot_limit":
            raise Conflict(
                f"a doctor holds at most {self.settings.max_future_slots} future slots; "
                "none was created",
                code="slot_limit",
                limit=self.settings.max_future_slots,
                future_slots=int(result[2]),
            )
        if result[0] == 0:
            other = str(result[3])
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
            await self._invalidate_doctor(doctor_id, [s.id for s in slots])
            raise
        except (StoreUnavailable, ConditionFailed) as exc:
            await self._finish_create(doctor_id, slots, "abort", now)
            raise Unavailable("the slots could not be stored; none was created") from exc
        except BaseException:
            await self._finish_create(doctor_id, slots, "abort", now)
            raise
        await self._after_commit(
            doctor_id, self._finish_create(doctor_id, slots, "commit", now), [s.id for s in slots]
        )
        return [s.view() for s in slots]

    async def _store_new_slots(self, slots: list[Slot]) -> None:
        """Up to 100 slots: one transaction (each ``absent``). More cannot be one DynamoDB
        transaction: idempotent ``put_many``, and on failure delete what may have landed
        (compensation). If the compensation fails too (``_KeepPending``), the caller drops the
        pending slots and invalidates the doctor, whose next use rebuilds it from whatever the
        store holds."""
        items = [st.slot_item(s) for s in slots]
        if len(items) <= MAX_TRANSACT:
            await self.store.transact([Put(item=item, expect="absent") for item in items])
            return
        try:
            await self.store.put_many(items)
        except StoreUnavailable:
            try:
                for i in range(0, len(items), MAX_TRANSACT):
                    chunk: list[Op] = [
                        Delete(pk=it.pk, sk=it.sk) for it in items[i : i + MAX_TRANSACT]
                    ]
                    await self.store.transact(chunk)
            except StoreUnavailable:
                log.error("compensation of a partial slot batch failed; rehydrate this doctor")
                raise _KeepPending("the slots could not be stored") from None
            raise

    async def _finish_create(self, doctor_id: str, slots: list[Slot], mode: str, now: int) -> None:
        channel = ""
        args: list[Any] = []
        for s in slots:
            channel, frame = self._slot_frame(doctor_id, s.id, s.start, s.end, "open", now)
            args += [s.id, frame]
        result = await self._doctor_eval(
            self.scripts.commit,
            doctor_id,
            [keys.doctor_slots(doctor_id), keys.doctor_slot_ends(doctor_id),
             keys.doctor_open_slots(doctor_id), keys.doctor_hydrated(doctor_id),
             *[keys.slot(doctor_id, s.id) for s in slots]],
            [mode, now, channel, len(slots), *args],
        )  # fmt: skip
        if mode == "commit" and int(result[3]) > 0:
            # Redis was rebuilt mid-way; the store has the slots, so load them from there.
            await self.hydrate_doctor(doctor_id, force=True)

    # --- edit and delete ----------------------------------------------------------------------
    async def _lock(
        self, doctor_id: str, slot_id: str, mode: str, start: int = 0, end: int = 0
    ) -> tuple[int, int]:
        if doctor_of_slot(slot_id) != doctor_id:
            raise NotFound("slot not found", code="slot_not_found")
        result = await self._doctor_eval(
            self.scripts.lock,
            doctor_id,
            self._lock_keys(doctor_id, slot_id),
            [slot_id, mode, start, end, MAX_SLOT_MS],
        )
        if result[0] == 0:
            reason = str(result[1])
            if reason == "not_found":
                raise NotFound("slot not found", code="slot_not_found")
            if reason == "slot_overlap":
                raise Conflict("the new times overlap another slot", code="slot_overlap")
            raise Conflict("only an open slot can be changed", code="slot_not_open")
        return int(result[2]), int(result[3])

    async def _unlock(
        self, doctor_id: str, slot_id: str, mode: str, frame: tuple[str, bytes] | None, now: int,
        start: int = 0, end: int = 0,
    ) -> None:  # fmt: skip
        channel, payload = frame or ("", b"")
        result = await self._doctor_eval(
            self.scripts.unlock,
            doctor_id,
            self._lock_keys(doctor_id, slot_id),
            [slot_id, mode, now, channel, payload,
             to_rfc3339(start) if start else "", to_rfc3339(end) if end else ""],
        )  # fmt: skip
        if result[0] == 0 and mode != "abort":
            await self.hydrate_doctor(doctor_id, force=True)

    @redis_guard
    async def update_slot(
        self, principal: Principal, slot_id: str, start_s: str, end_s: str
    ) -> SlotView:
        """Move an open slot (409 ``slot_not_open`` otherwise; overlap-checked)."""
        doctor_id = _doctor(principal)
        now = self.clock()
        start = parse_rfc3339(start_s, field="start")
        end = parse_rfc3339(end_s, field="end")
        check_interval(start, end, now)
        old_start, old_end = await self._lock(doctor_id, slot_id, "edit", start, end)
        old = Slot(id=slot_id, doctor_id=doctor_id, start=old_start, end=old_end)
        new = Slot(id=slot_id, doctor_id=doctor_id, start=start, end=end)
        ops: list[Op] = [st.hold_check_absent(doctor_id, slot_id)]
        if old_start == start:
            ops.append(Put(item=st.slot_item(new), expect="present"))
        else:
            old_item = st.slot_item(old)
            ops += [
                Delete(pk=old_item.pk, sk=old_item.sk, expect="present"),
                Put(item=st.slot_item(new), expect="absent"),
            ]
        # Built before the write: nothing that can fail may sit between write and unlock.
        frame = self._slot_frame(doctor_id, slot_id, start, end, "open", now)
        await self._locked_write(doctor_id, slot_id, ops, now)
        await self._after_commit(
            doctor_id, self._unlock(doctor_id, slot_id, "edit", frame, now, start, end), [slot_id]
        )
        return new.view()

    @redis_guard
    async def delete_slot(self, principal: Principal, slot_id: str) -> None:
        """Remove an open slot (409 ``slot_not_open`` otherwise)."""
        doctor_id = _doctor(principal)
        now = self.clock()
        start, end = await self._lock(doctor_id, slot_id, "delete")
        item = st.slot_item(Slot(id=slot_id, doctor_id=doctor_id, start=start, end=end))
        ops: list[Op] = [
            st.hold_check_absent(doctor_id, slot_id),
            Delete(pk=item.pk, sk=item.sk, expect="present"),
        ]
        await self._locked_write(doctor_id, slot_id, ops, now)
        frame = self._slot_frame(doctor_id, slot_id, start, end, "removed", now)
        await self._after_commit(
            doctor_id, self._unlock(doctor_id, slot_id, "delete", frame, now), [slot_id]
        )

    async def _locked_write(self, doctor_id: str, slot_id: str, ops: list[Op], now: int) -> None:
        try:
            await self.store.transact(ops)
        except ConditionFailed as exc:
            await self._unlock(doctor_id, slot_id, "abort", None, now)
            # The store disagrees with Redis (a hold exists, or the slot is gone): trust it.
            await self.hydrate_doctor(doctor_id, force=True)
            raise Conflict("only an open slot can be changed", code="slot_not_open") from exc
        except BaseException:
            await self._unlock(doctor_id, slot_id, "abort", None, now)
            raise

    # --- reading ------------------------------------------------------------------------------
    async def _read_slots(self, doctor_id: str, lo: int, hi: int) -> list[Slot]:
        """The doctor's committed slots starting in [lo, hi), hydrating the doctor if needed.
        ``locked`` (mid edit/delete) reads as open; ``pending`` (uncommitted) is left out."""
        await self._check_stale(doctor_id)
        for _ in range(3):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(keys.doctor_hydrated(doctor_id))
                pipe.zrangebyscore(keys.doctor_slots(doctor_id), lo, f"({hi}")
                hydrated, members = await pipe.execute()
            if not hydrated:
                await self.hydrate_doctor(doctor_id)
                continue
            ids = [m.decode() for m in members if not m.startswith(b"~")]
            if not ids:
                return []
            async with self.redis.pipeline(transaction=False) as pipe:
                for slot_id in ids:
                    pipe.hmget(keys.slot(doctor_id, slot_id), "status", "start", "end",
                               "appointment_id")  # fmt: skip
                rows = await pipe.execute()
            out: list[Slot] = []
            for slot_id, (status, start, end, appt) in zip(ids, rows, strict=True):
                if status is None or status == b"pending":
                    continue
                state = status.decode()
                out.append(
                    Slot(
                        id=slot_id,
                        doctor_id=doctor_id,
                        start=int(start),
                        end=int(end),
                        status="open" if state == "locked" else state,
                        appointment_id=appt.decode() if appt else None,
                    )
                )
            return out
        raise Unavailable("the doctor's agenda could not be loaded", code="redis_unavailable")

    @redis_guard
    async def list_own_slots(
        self, principal: Principal, start: str | None, end: str | None
    ) -> list[SlotView]:
        """The doctor's own slots with full status; default from now, 62 days."""
        doctor_id = _doctor(principal)
        lo, hi = time_range(
            start, end, self.clock(), default_days=AGENDA_MAX_DAYS, max_days=OWN_MAX_DAYS
        )
        return [s.view() for s in await self._read_slots(doctor_id, lo, hi)]

    @redis_guard
    async def agenda(self, doctor_id: str, start: str | None, end: str | None) -> Agenda:
        """A doctor's public agenda with the price: ``open`` (bookable now) or ``taken``; 14
        days by default, at most 62 (422)."""
        lo, hi = time_range(
            start, end, self.clock(), default_days=AGENDA_DEFAULT_DAYS, max_days=AGENDA_MAX_DAYS
        )
        profile = await self.accounts.get_doctor(doctor_id)
        slots = await self._read_slots(doctor_id, lo, hi)
        # Requests close DECISION_LEAD_MS before the start (reserve.lua): such a slot is no
        # longer open to anyone, whether or not someone holds it.
        bookable_after = self.clock() + DECISION_LEAD_MS
        return Agenda(
            doctor_id=doctor_id,
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
