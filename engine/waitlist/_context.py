"""What every part of the waitlist shares: clients, clock, scripts and the settings' values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from engine.timeutil import now_ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.asyncio import Redis

    from engine.notifications import Outbox
    from engine.store import Store
    from engine.waitlist._scripts import Scripts

DAY_MS = 86_400_000
MAX_WINDOW_DAYS = 62
DECISION_LEAD_MS = 15 * 60_000
"""Requests close this long before a slot starts (booking's reserve.lua): no hold past it."""
LAPSE_LEASE_MS = 30_000
"""How long a lapse claim hides a hold from the other replicas' sweeps."""


class SlotsPort(Protocol):
    """What the waitlist needs from booking (:class:`engine.booking.BookingService`)."""

    async def rebuild_doctor(self, doctor_id: str, *, force: bool = False) -> int: ...


class DoctorsPort(Protocol):
    """What the waitlist needs from accounts: the doctor exists (``NotFound`` otherwise)."""

    async def get_doctor(self, doctor_id: str) -> Any: ...


@dataclass(kw_only=True)
class WaitlistContext:
    store: Store
    redis: Redis
    doctors: DoctorsPort
    slots: SlotsPort
    scripts: Scripts
    hold_ms: int
    """How long a hold lasts (``HEALTHMED_WAITLIST_HOLD_SECONDS``), ms."""
    limit: int
    """Active entries per patient (``HEALTHMED_WAITLIST_LIMIT``)."""
    sweep_interval: float
    outbox: Outbox | None = None
    clock: Callable[[], int] = field(default=now_ms)
