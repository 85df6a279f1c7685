"""Waitlist: patients waiting for a popular doctor, holds of freed slots for one patient at a
time (first come, first served), and their hand-over.

Read :mod:`engine.waitlist._service` for the order of every change and the parts,
``release.lua`` for the one atomic step every freed slot goes through, and
:mod:`engine.waitlist._store` for the durable layout.
"""

from __future__ import annotations

from engine.waitlist._context import MAX_WINDOW_DAYS
from engine.waitlist._model import (
    CreateEntry,
    DoctorEntryPage,
    DoctorEntryView,
    Entry,
    EntryList,
    EntryView,
    Offer,
    OfferedEvent,
    OfferSlot,
    OfferView,
)
from engine.waitlist._service import WaitlistService

__all__ = [
    "MAX_WINDOW_DAYS",
    "CreateEntry",
    "DoctorEntryPage",
    "DoctorEntryView",
    "Entry",
    "EntryList",
    "EntryView",
    "Offer",
    "OfferSlot",
    "OfferView",
    "OfferedEvent",
    "WaitlistService",
]
