"""Booking shapes: request bodies (unknown fields rejected), stored records and wire views.

Internal times are epoch milliseconds; wire times are RFC 3339 UTC (``Z``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from engine.timeutil import to_rfc3339

SlotStatus = Literal["open", "requested", "booked"]
PublicStatus = Literal["open", "taken"]
AppointmentStatus = Literal["requested", "confirmed", "refused", "expired", "cancelled"]
CancelledBy = Literal["patient", "doctor", "system"]

ACTIVE: frozenset[str] = frozenset({"requested", "confirmed"})
JUSTIFICATION_MIN, JUSTIFICATION_MAX = 10, 1000
"""Length of a cancellation's justification, counted once trimmed."""


# --- request bodies ---------------------------------------------------------------------------
class SlotTimes(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    start: str
    end: str


class WeeklyRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Slots every ``weekdays`` (ISO, 1 = Monday) between ``start_time`` and ``end_time``
    (``HH:MM``, local to ``timezone``) from the date ``from`` to ``to`` (inclusive)."""

    from_: str = msgspec.field(name="from")
    to: str
    weekdays: list[int]
    start_time: str
    end_time: str
    timezone: Annotated[
        str | None,
        msgspec.Meta(description="an IANA name; omitted: the doctor's profile `timezone`"),
    ] = None
    duration_minutes: int = 50
    gap_minutes: int = 10
    skip_holidays: Annotated[
        bool,
        msgspec.Meta(
            description="no slot on Brazil's national public holidays nor on those of the "
            "doctor's `uf`"
        ),
    ] = False


class CreateSlots(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Either explicit ``slots`` or a weekly ``rule``."""

    slots: list[SlotTimes] | None = None
    rule: WeeklyRule | None = None


class BookRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    slot_id: str


class RefuseBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: str | None = None


class CancelBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Required: a cancellation always says why (the other side is told)."""

    justification: Annotated[
        str,
        msgspec.Meta(
            description=f"{JUSTIFICATION_MIN} to {JUSTIFICATION_MAX} characters once trimmed "
            "(422 `invalid_justification` otherwise)",
            extra_json_schema={
                "extra": {"min_length": JUSTIFICATION_MIN, "max_length": JUSTIFICATION_MAX}
            },
        ),
    ]


class RatingBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    stars: int
    comment: str | None = None


# --- views ------------------------------------------------------------------------------------
class Price(msgspec.Struct, frozen=True, kw_only=True):
    amount_cents: int
    currency: str = "BRL"


class SlotView(msgspec.Struct, frozen=True, kw_only=True):
    """A slot as its doctor sees it."""

    id: str
    start: str
    end: str
    status: SlotStatus
    appointment_id: str | None = None


class SlotList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[SlotView]


class PublicSlot(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    start: str
    end: str
    status: PublicStatus


class Agenda(msgspec.Struct, frozen=True, kw_only=True):
    doctor_id: str
    price: Price
    slots: list[PublicSlot]


class SlotRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    start: str
    end: str


class MeetingView(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    starts_at: str
    ends_at: str


class CancellationView(msgspec.Struct, frozen=True, kw_only=True):
    by: CancelledBy
    justification: str
    at: str


class RefusalView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    at: str
    reason: str | None = None


class AppointmentView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    status: AppointmentStatus
    doctor_id: str
    patient_id: str
    slot: SlotRef
    price: Price
    requested_at: str
    decision_deadline: str
    decided_at: str | None = None
    meeting: MeetingView | None = None
    cancellation: CancellationView | None = None
    refusal: RefusalView | None = None
    patient_name: str | None = None
    """In the doctor's view only: who is coming (never the CPF)."""
    doctor_name: str | None = None
    """In the patient's view only."""
    doctor_specialty: str | None = None
    """In the patient's view only."""


class AppointmentPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AppointmentView]
    next_cursor: str | None


class MeetingDoc(msgspec.Struct, frozen=True, kw_only=True):
    room: str
    starts_at: int
    ends_at: int


class Cancellation(msgspec.Struct, frozen=True, kw_only=True):
    by: CancelledBy
    justification: str
    at: int


# --- stored -----------------------------------------------------------------------------------
class Appointment(msgspec.Struct, frozen=True, kw_only=True):
    """The durable appointment (``APPT#<id>/APPT`` and its per-participant index copies)."""

    id: str
    status: AppointmentStatus
    doctor_id: str
    patient_id: str
    slot_id: str
    start: int
    end: int
    price_cents: int
    currency: str
    requested_at: int
    deadline: int
    decided_at: int | None = None
    meeting: MeetingDoc | None = None
    cancellation: Cancellation | None = None
    refusal_reason: str | None = None
    sequence: int = 0
    """iCalendar ``SEQUENCE`` of its invitations: bumped by every change a participant's
    calendar must follow after the confirmation (a cancellation, a move)."""

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data

    def hold_value(self) -> str:
        """Its entry in the patient's holds (claim.lua): ``start:end``, plus
        ``:doctor:deadline`` while it is a request (counted toward the patient's caps)."""
        if self.status == "requested":
            return f"{self.start}:{self.end}:{self.doctor_id}:{self.deadline}"
        return f"{self.start}:{self.end}"

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Appointment:
        return msgspec.convert(data, cls)

    def view(self, meeting_url: str | None = None) -> AppointmentView:
        meeting = None
        if self.meeting is not None and meeting_url is not None and self.status == "confirmed":
            meeting = MeetingView(
                url=meeting_url,
                starts_at=to_rfc3339(self.meeting.starts_at),
                ends_at=to_rfc3339(self.meeting.ends_at),
            )
        cancellation = None
        if self.cancellation is not None:
            c = self.cancellation
            cancellation = CancellationView(
                by=c.by, justification=c.justification, at=to_rfc3339(c.at)
            )
        refusal = None
        if self.status == "refused" and self.decided_at is not None:
            refusal = RefusalView(at=to_rfc3339(self.decided_at), reason=self.refusal_reason)
        return AppointmentView(
            id=self.id,
            status=self.status,
            doctor_id=self.doctor_id,
            patient_id=self.patient_id,
            slot=SlotRef(id=self.slot_id, start=to_rfc3339(self.start), end=to_rfc3339(self.end)),
            price=Price(amount_cents=self.price_cents, currency=self.currency),
            requested_at=to_rfc3339(self.requested_at),
            decision_deadline=to_rfc3339(self.deadline),
            decided_at=to_rfc3339(self.decided_at) if self.decided_at is not None else None,
            meeting=meeting,
            cancellation=cancellation,
            refusal=refusal,
        )


class Slot(msgspec.Struct, frozen=True, kw_only=True):
    """The durable slot (``DOC#<doctor>/SLOT#<start>#<id>``)."""

    id: str
    doctor_id: str
    start: int
    end: int
    status: SlotStatus = "open"
    appointment_id: str | None = None
    patient_id: str | None = None
    deadline: int | None = None
    requested_at: int | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Slot:
        return msgspec.convert(data, cls)

    def view(self) -> SlotView:
        return SlotView(
            id=self.id,
            start=to_rfc3339(self.start),
            end=to_rfc3339(self.end),
            status=self.status,
            appointment_id=self.appointment_id,
        )
