"""Waitlist shapes: the request body (unknown fields rejected), the stored entry, wire views.

Internal times are epoch milliseconds; wire times are RFC 3339 UTC (``Z``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.timeutil import to_rfc3339


class CreateEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A window (instants) in which the patient could attend this doctor."""

    doctor_id: str
    from_: str = msgspec.field(name="from")
    to: str


class Offer(msgspec.Struct, frozen=True, kw_only=True):
    """A slot held for an entry until ``expires_at`` (ms)."""

    slot_id: str
    start: int
    end: int
    expires_at: int


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """The durable entry (``DOC#<doctor>/WAIT#<created>#<id>``)."""

    id: str
    doctor_id: str
    patient_id: str
    start: int
    end: int
    created_at: int
    seat: int
    """Which of the patient's guard items (``USER#<patient>/WAIT#<seat>``) it occupies."""
    offer: Offer | None = None
    passed: list[str] = msgspec.field(default_factory=list)
    """Slots this entry declined or let lapse: never offered to it again."""

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Entry:
        return msgspec.convert(data, cls)


class OfferSlot(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    start: str
    end: str


class OfferView(msgspec.Struct, frozen=True, kw_only=True):
    slot: OfferSlot
    hold_expires_at: str

    @classmethod
    def of(cls, offer: Offer) -> OfferView:
        slot = OfferSlot(id=offer.slot_id, start=to_rfc3339(offer.start), end=to_rfc3339(offer.end))
        return cls(slot=slot, hold_expires_at=to_rfc3339(offer.expires_at))


class EntryView(msgspec.Struct, frozen=True, kw_only=True):
    """An entry as its patient sees it."""

    id: str
    doctor_id: str
    from_: str = msgspec.field(name="from")
    to: str
    created_at: str
    position: int
    """1 = the next to be offered among this doctor's entries."""
    offer: OfferView | None


class DoctorEntryView(msgspec.Struct, frozen=True, kw_only=True):
    """An entry as the doctor sees it (the patient's id only)."""

    id: str
    patient_id: str
    from_: str = msgspec.field(name="from")
    to: str
    created_at: str
    position: int
    offer: OfferView | None


class EntryList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[EntryView]


class DoctorEntryPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[DoctorEntryView]
    next_cursor: str | None


class OfferedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """``waitlist.offered`` on ``patient.<id>.appointments``."""

    entry_id: str
    slot: OfferSlot
    hold_expires_at: str


def _shown(entry: Entry, position: int) -> dict[str, Any]:
    """What both sides see of an entry (each view adds whom it is with)."""
    return {
        "id": entry.id,
        "from_": to_rfc3339(entry.start),
        "to": to_rfc3339(entry.end),
        "created_at": to_rfc3339(entry.created_at),
        "position": position,
        "offer": OfferView.of(entry.offer) if entry.offer else None,
    }


def entry_view(entry: Entry, position: int) -> EntryView:
    return EntryView(doctor_id=entry.doctor_id, **_shown(entry, position))


def doctor_entry_view(entry: Entry, position: int) -> DoctorEntryView:
    return DoctorEntryView(patient_id=entry.patient_id, **_shown(entry, position))
