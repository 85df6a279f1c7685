"""Booking shapes: request bodies (unknown fields rejected), stored records and wire views.

Internal times are epoch milliseconds; wire times are RFC 3339 UTC (``Z``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from engine.timeutil import DEFAULT_TIMEZONE, to_rfc3339
from engine.wire import doc

SlotStatus = Literal["open", "requested", "booked", "held"]
PublicStatus = Literal["open", "taken"]
AppointmentStatus = Literal["requested", "confirmed", "refused", "expired", "cancelled"]
CancelledBy = Literal["patient", "doctor", "system"]

ACTIVE: frozenset[str] = frozenset({"requested", "confirmed"})
JUSTIFICATION_MIN, JUSTIFICATION_MAX = 10, 1000
"""Length of a cancellation's justification, counted once trimmed."""
TIME_OFF_MAX_DAYS = 90
REASON_MAX = 1000
TEXT_MAX = 1000
"""Length of a refusal's reason and a rating's comment."""
MOVE_SUFFIX = "~m"
"""In Redis a move's new slot is held by ``<appointment id>~m`` (ULIDs never hold ``~``) until
the move is applied (see :mod:`engine.booking._moves`)."""


def move_holder(appointment_id: str) -> str:
    return appointment_id + MOVE_SUFFIX


# --- request bodies ---------------------------------------------------------------------------
_RFC3339 = "RFC 3339 with an offset, such as 2026-12-01T13:00:00Z (422 `invalid_time`)"
_CLOCK = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_RULE = "(422 `invalid_rule`)"


class SlotTimes(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """From 5 minutes to 4 hours, starting in the future and at most two years ahead (422
    `invalid_slot`, `slot_too_short`, `slot_too_long`, `slot_in_past`, `beyond_horizon`)."""

    start: Annotated[str, doc(_RFC3339, format="date-time", examples=["2026-12-01T13:00:00Z"])]
    end: Annotated[str, doc(_RFC3339, format="date-time", examples=["2026-12-01T13:50:00Z"])]


class WeeklyRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Slots every ``weekdays`` (ISO, 1 = Monday) between ``start_time`` and ``end_time``
    (``HH:MM``, local to ``timezone``) from the date ``from`` to ``to`` (inclusive): at most
    366 days, starting today or later, at most 500 slots (422 `too_many_slots`)."""

    from_: Annotated[
        str,
        doc(
            f"first day, YYYY-MM-DD, today or later {_RULE}",
            format="date",
            pattern=_DATE,
            examples=["2026-12-07"],
        ),
    ] = msgspec.field(name="from")
    to: Annotated[
        str,
        doc(
            f"last day (inclusive), YYYY-MM-DD, not before `from` {_RULE}",
            format="date",
            pattern=_DATE,
            examples=["2026-12-18"],
        ),
    ]
    weekdays: Annotated[
        list[int],
        doc(
            f"ISO weekdays, 1 = Monday to 7 = Sunday {_RULE}",
            min_items=1,
            items={"type": "integer", "minimum": 1, "maximum": 7},
            examples=[[1, 3, 5]],
        ),
    ]
    start_time: Annotated[
        str, doc(f"HH:MM, local to `timezone` {_RULE}", pattern=_CLOCK, examples=["08:00"])
    ]
    end_time: Annotated[
        str,
        doc(f"HH:MM, after `start_time` {_RULE}", pattern=_CLOCK, examples=["12:00"]),
    ]
    timezone: Annotated[
        str | None,
        doc(
            "an IANA time zone name; omitted: the doctor's profile `timezone` "
            "(422 `invalid_timezone`)",
            pattern=r"^[A-Za-z0-9_+\-]{1,32}(/[A-Za-z0-9_+\-]{1,32}){0,2}$",
            examples=["America/Sao_Paulo"],
        ),
    ] = None
    duration_minutes: Annotated[
        int, doc(f"minutes a slot lasts, 5 to 240 {_RULE}", minimum=5, maximum=240)
    ] = 50
    gap_minutes: Annotated[
        int, doc(f"minutes between slots, 0 to 1440 {_RULE}", minimum=0, maximum=1440)
    ] = 10
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
    slot_id: Annotated[str, doc("an open slot's id", examples=["01JDZ3T6Q4V8K2M5N7P9R1S3T5"])]


class RefuseBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: (
        Annotated[
            str,
            doc(
                f"told to the patient; at most {TEXT_MAX} characters (422 `invalid_reason`)",
                max_length=TEXT_MAX,
                examples=["Estarei em congresso nesta data."],
            ),
        ]
        | None
    ) = None


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


class RescheduleBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    slot_id: Annotated[str, msgspec.Meta(description="another open slot of the same doctor")]


class TimeOffBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A range of instants the doctor is away: ``to`` after ``from``, at most 90 days."""

    from_: str = msgspec.field(name="from")
    to: str
    reason: str | None = None
    cancel_confirmed: Annotated[
        bool,
        msgspec.Meta(
            description="cancel (by the doctor, with `justification`) the confirmed "
            "appointments inside; without it they make the call 409 `confirmed_in_range`"
        ),
    ] = False
    justification: Annotated[
        str | None,
        msgspec.Meta(
            description=f"{JUSTIFICATION_MIN} to {JUSTIFICATION_MAX} characters; required with "
            "`cancel_confirmed` (422 `invalid_justification`)"
        ),
    ] = None


class RatingBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    stars: Annotated[int, doc("1 to 5 (422 `invalid_stars`)", minimum=1, maximum=5, examples=[5])]
    comment: (
        Annotated[
            str,
            doc(
                f"at most {TEXT_MAX} characters (422 `invalid_comment`)",
                max_length=TEXT_MAX,
                examples=["Atenciosa e pontual."],
            ),
        ]
        | None
    ) = None


# --- views ------------------------------------------------------------------------------------
class Price(msgspec.Struct, frozen=True, kw_only=True):
    amount_cents: int
    currency: str = "BRL"


class HoldView(msgspec.Struct, frozen=True, kw_only=True):
    """A waitlist hold: the slot is offered to this entry's patient until ``expires_at``."""

    entry_id: str
    patient_id: str
    expires_at: str


class SlotView(msgspec.Struct, frozen=True, kw_only=True):
    """A slot as its doctor sees it."""

    id: str
    start: str
    end: str
    status: SlotStatus
    appointment_id: str | None = None
    hold: HoldView | None = None
    """Only while ``held`` (a waitlist hold)."""


class SlotList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[SlotView]
    timezone: str = DEFAULT_TIMEZONE
    """The doctor's time zone (IANA), to show local times."""


class SlotPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of the doctor's own agenda, in start order."""

    items: list[SlotView]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next page; None on the last."""
    timezone: str = DEFAULT_TIMEZONE
    """The doctor's time zone (IANA), to show local times."""


class PublicSlot(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    start: str
    end: str
    status: PublicStatus


class Agenda(msgspec.Struct, frozen=True, kw_only=True):
    doctor_id: str
    price: Price
    slots: list[PublicSlot]
    timezone: str = DEFAULT_TIMEZONE
    """The doctor's time zone (IANA), to show local times."""


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


class PendingMoveView(msgspec.Struct, frozen=True, kw_only=True):
    """A confirmed appointment's requested move, waiting for the doctor (accept applies it,
    refuse drops it; undecided at ``decision_deadline`` it lapses)."""

    slot: SlotRef
    decision_deadline: str


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
    pending_move: PendingMoveView | None = None
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


class MoveDoc(msgspec.Struct, frozen=True, kw_only=True):
    """A confirmed appointment's pending move: the new slot it holds meanwhile."""

    slot_id: str
    start: int
    end: int
    deadline: int
    requested_at: int


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
    pending_move: MoveDoc | None = None
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

    def move_hold_value(self) -> str:
        """Its pending move's entry in the patient's holds (under :func:`move_holder`): a
        request for the new slot, counted like one until the move's deadline."""
        move = self.pending_move
        assert move is not None
        return f"{move.start}:{move.end}:{self.doctor_id}:{move.deadline}"

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
        move = None
        if self.pending_move is not None and self.status == "confirmed":
            m = self.pending_move
            move = PendingMoveView(
                slot=SlotRef(id=m.slot_id, start=to_rfc3339(m.start), end=to_rfc3339(m.end)),
                decision_deadline=to_rfc3339(m.deadline),
            )
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
            pending_move=move,
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
    move: bool = False
    """``requested`` by a confirmed appointment's pending move (held in Redis by
    :func:`move_holder`)."""
    hold_entry_id: str | None = None
    """While ``held``: the waitlist entry it is offered to (``patient_id`` is its patient)."""
    hold_expires_at: int | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        if not self.move:
            del data["move"]
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Slot:
        return msgspec.convert(data, cls)

    def view(self) -> SlotView:
        hold = None
        if self.status == "held" and self.hold_entry_id and self.hold_expires_at:
            hold = HoldView(
                entry_id=self.hold_entry_id,
                patient_id=self.patient_id or "",
                expires_at=to_rfc3339(self.hold_expires_at),
            )
        return SlotView(
            id=self.id,
            start=to_rfc3339(self.start),
            end=to_rfc3339(self.end),
            status=self.status,
            appointment_id=self.appointment_id,
            hold=hold,
        )


class TimeOff(msgspec.Struct, frozen=True, kw_only=True):
    """The durable time off (``DOC#<doctor>/OFF#<start>#<id>``)."""

    id: str
    doctor_id: str
    start: int
    end: int
    reason: str | None
    removed_slots: list[str]
    refused_requests: list[str]
    cancelled_appointments: list[str]
    created_at: int

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TimeOff:
        return msgspec.convert(data, cls)

    def view(self) -> TimeOffView:
        return TimeOffView(
            id=self.id,
            from_=to_rfc3339(self.start),
            to=to_rfc3339(self.end),
            reason=self.reason,
            removed_slots=self.removed_slots,
            refused_requests=self.refused_requests,
            cancelled_appointments=self.cancelled_appointments,
            created_at=to_rfc3339(self.created_at),
        )


class TimeOffView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    from_: str = msgspec.field(name="from")
    to: str
    reason: str | None
    removed_slots: list[str]
    """Ids of the slots the time off deleted (open ones, and those it freed)."""
    refused_requests: list[str]
    """Ids of the requested appointments it refused."""
    cancelled_appointments: list[str]
    """Ids of the confirmed appointments it cancelled (``cancel_confirmed``)."""
    created_at: str


class TimeOffList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TimeOffView]
