"""The waitlist service: a thin facade over its parts (docs/API.md "Waitlist").

Order of every change (as a reservation's): Redis decides in one script on the doctor's hash
tag, the store records the outcome in one transaction, then the events go out. Parts:
:mod:`._entries` (what patients and doctors do), :mod:`._handover` (release, record, the
holder's booking, the lapse sweep), :mod:`._hot` (scripts, positions, rebuild).

A doctor without a waitlist pays one ``EXISTS`` and one ``HLEN`` inside the release script,
and nothing on reservations (reserve.lua reads the hold fields only for a slot not open).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.timeutil import now_ms
from engine.waitlist._context import DoctorsPort, SlotsPort, WaitlistContext
from engine.waitlist._entries import Entries
from engine.waitlist._handover import Handover
from engine.waitlist._hot import HotWaitlist
from engine.waitlist._scripts import Scripts

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from redis.asyncio import Redis

    from engine.config import Settings
    from engine.notifications import Outbox
    from engine.principal import Principal
    from engine.store import Op, Store
    from engine.waitlist._model import CreateEntry, DoctorEntryPage, EntryList, EntryView
    from engine.waitlist._scripts import Freed

__all__ = ["DoctorsPort", "SlotsPort", "WaitlistService"]


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
        self.ctx = WaitlistContext(
            store=store, redis=redis, doctors=doctors, slots=slots, scripts=Scripts(redis),
            hold_ms=settings.waitlist_hold_seconds * 1000, limit=settings.waitlist_limit,
            sweep_interval=float(settings.sweep_interval_seconds), outbox=outbox, clock=clock,
        )  # fmt: skip
        self.hot = HotWaitlist(self.ctx)
        self.handover = Handover(self.ctx, self.hot)
        self.entries = Entries(self.ctx, self.hot, self.handover)

    @property
    def hold_ms(self) -> int:
        return self.ctx.hold_ms

    # --- entries ------------------------------------------------------------------------------
    async def create(self, principal: Principal, body: CreateEntry) -> EntryView:
        """Wait for a doctor within ``[from, to)``: ``Invalid`` for a window in the past,
        inverted or longer than 62 days; ``NotFound`` for an unknown doctor; ``Conflict``
        ``waitlist_limit`` past the patient's limit, ``already_waiting`` for an overlapping
        entry at this doctor."""
        return await self.entries.create(principal, body)

    async def list_own(self, principal: Principal) -> EntryList:
        """The patient's active entries with their positions and offers."""
        return await self.entries.list_own(principal)

    async def list_doctor(
        self, principal: Principal, *, limit: int = 20, cursor: str | None = None
    ) -> DoctorEntryPage:
        """The doctor's own waitlist in FCFS order (``limit`` 1-100, ``next_cursor``)."""
        return await self.entries.list_doctor(principal, limit=limit, cursor=cursor)

    async def delete(self, principal: Principal, entry_id: str) -> None:
        """Leave the waitlist; a slot held for this entry passes on at once."""
        await self.entries.delete(principal, entry_id)

    async def decline(self, principal: Principal, entry_id: str) -> None:
        """Decline the held slot (``Conflict`` ``no_offer`` if none): it passes on at once."""
        await self.entries.decline(principal, entry_id)

    async def export_user(self, principal: Principal) -> dict[str, Any]:
        return await self.entries.export_user(principal)

    async def erase_user(self, principal: Principal) -> None:
        await self.entries.erase_user(principal)

    # --- hand-over (booking calls these) ------------------------------------------------------
    async def release(
        self, doctor_id: str, slot_id: str, start: int, end: int, *, mode: Freed, ref: str = "",
        undo: bool = False, now: int | None = None, slot_known_open: bool = True,
        hand_over: bool = True,
    ) -> str:  # fmt: skip
        """Free a slot and hand it to the next entry or open it (release.lua); see
        :meth:`engine.waitlist._handover.Handover.release`."""
        return await self.handover.release(
            doctor_id, slot_id, start, end, mode=mode, ref=ref, undo=undo, now=now,
            slot_known_open=slot_known_open, hand_over=hand_over,
        )  # fmt: skip

    async def has_waitlist(self, doctor_id: str) -> bool:
        return await self.hot.has_waitlist(doctor_id)

    async def fulfilment(self, doctor_id: str, entry_id: str) -> list[Op]:
        return await self.handover.fulfilment(doctor_id, entry_id)

    async def fulfilled(self, doctor_id: str, entry_id: str, start: int, end: int) -> None:
        await self.handover.fulfilled(doctor_id, entry_id, start, end)

    # --- recovery and the lapse sweep ---------------------------------------------------------
    async def hydrate(self, doctor_id: str, *, force: bool = False) -> int:
        return await self.hot.hydrate(doctor_id, force=force)

    async def sweep_once(self, *, max_doctors: int = 100, max_items: int = 50) -> int:
        return await self.handover.sweep_once(max_doctors=max_doctors, max_items=max_items)

    async def reindex(self, doctor_ids: Sequence[str]) -> int:
        return await self.handover.reindex(doctor_ids)

    async def run_sweeper(self) -> None:
        await self.handover.run_sweeper()
