"""Notification shapes: the kinds, the stored outbox item, the wire views.

Times are epoch milliseconds inside, RFC 3339 UTC on the wire.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, get_args

import msgspec

from engine.timeutil import to_rfc3339

Kind = Literal[
    "appointment.requested",
    "appointment.confirmed",
    "appointment.refused",
    "appointment.expired",
    "appointment.cancelled",
    "appointment.rescheduled",
    "appointment.reminder",
    "waitlist.offered",
    "password.reset",
]
KINDS: frozenset[str] = frozenset(get_args(Kind))
Status = Literal["queued", "sent", "failed"]
Channel = Literal["email"]


class Contact(NamedTuple):
    """Where and how to address one account: its display name and e-mail address."""

    name: str
    email: str


class OutboxItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One message of the outbox (``USER#<recipient>`` / ``NOTIF#<created>#<id>``).

    ``context`` is what the templates need; it is dropped once the message is sent or has
    failed (it can hold a meeting link or a reset code), keeping ``subject`` and ``to``.
    """

    id: str
    kind: Kind
    recipient_id: str
    created_at: int
    due_at: int
    status: Status = "queued"
    channel: Channel = "email"
    context: dict[str, Any] | None = None
    to: str | None = None
    """Set for a recipient the caller names by address (``password.reset``) and on delivery."""
    subject: str = ""
    """Rendered when the message is queued (a reader of the previous release requires it);
    one stored without it (by a later release) is rendered by the sender when it first claims
    the message, and by listings while it waits."""
    attempts: int = 0
    sent_at: int | None = None
    failed_at: int | None = None
    last_error: str | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> OutboxItem:
        return msgspec.convert(data, cls)

    @property
    def message_id(self) -> str:
        """The RFC 5322 ``Message-ID``: the same for every send of this item."""
        return f"<{self.id}@healthmed>"

    def view(self, fallback_to: str) -> NotificationView:
        return NotificationView(
            id=self.id,
            kind=self.kind,
            channel=self.channel,
            to=self.to or fallback_to,
            subject=self.subject,
            status=self.status,
            created_at=to_rfc3339(self.created_at),
            sent_at=to_rfc3339(self.sent_at) if self.sent_at is not None else None,
        )


class NotificationView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One message as its recipient sees it in ``GET /v1/me/notifications``."""

    id: str
    kind: Kind
    channel: Channel
    to: str
    subject: str
    status: Status
    created_at: str
    sent_at: str | None = None


class NotificationPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[NotificationView]
    next_cursor: str | None


class CalendarLink(msgspec.Struct, frozen=True, kw_only=True):
    url: str


class CalendarEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One appointment as a calendar shows it to one participant."""

    appointment_id: str
    start: int
    end: int
    status: Literal["CONFIRMED", "TENTATIVE", "CANCELLED"]
    sequence: int
    summary: str
    changed_at: int
    meeting_url: str | None = None
