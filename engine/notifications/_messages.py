"""Messages: Brazilian Portuguese e-mails from Jinja2 templates, with iCalendar parts.

Each kind has ``templates/<kind>.txt`` (blocks ``subject`` and ``body``, plain text) and
``templates/<kind>.html`` (autoescaped: a name or a justification can never inject markup).
Templates see the item's ``context`` (ids, times in ms, a meeting link), display values
derived from it (``when``, ``when_short``, ``deadline``, ``hold_expires``), the recipient's
``role`` and the names of ``recipient``, ``doctor``, ``patient`` and ``other`` (the other
participant), looked up when the message is sent. Nothing else reaches a message: no CPF,
no health record, no token other than a reset code or the recipient's own meeting link.

Invitations (``appointment.confirmed`` and ``.rescheduled``: ``METHOD:REQUEST``;
``.cancelled``: ``METHOD:CANCEL``) carry one ``VEVENT`` whose ``UID`` is
``<appointment id>@healthmed`` and whose ``SEQUENCE`` is the appointment's, in UTC, made
with the ``icalendar`` library; the feed (:mod:`._calendar`) uses the same builder.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import icalendar
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from engine.notifications._mime import POLICY, boundary
from engine.notifications._model import CalendarEvent, Contact

if TYPE_CHECKING:
    from collections.abc import Iterable

    from engine.config import Settings
    from engine.notifications._model import OutboxItem

PRODID = "-//Health&Med//healthmed 1.0//PT-BR"
_WEEKDAYS = ("segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira",
             "sábado", "domingo")  # fmt: skip
INVITATIONS = {
    "appointment.confirmed": "REQUEST",
    "appointment.rescheduled": "REQUEST",
    "appointment.cancelled": "CANCEL",
}
"""Kinds that carry a ``text/calendar`` part, and its ``METHOD``."""


def uid(appointment_id: str) -> str:
    return f"{appointment_id}@healthmed"


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def calendar(
    events: Iterable[CalendarEvent],
    *,
    method: str | None = None,
    organizer: str | None = None,
    attendee: str | None = None,
    name: str | None = None,
) -> bytes:
    """An RFC 5545 calendar of ``events`` (times in UTC); ``method`` for an iTIP message."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    if method:
        cal.add("method", method)
    if name:
        cal.add("x-wr-calname", name)
    for event in events:
        vevent = icalendar.Event()
        vevent.add("uid", uid(event.appointment_id))
        vevent.add("dtstamp", _utc(event.changed_at))
        vevent.add("dtstart", _utc(event.start))
        vevent.add("dtend", _utc(event.end))
        vevent.add("sequence", event.sequence)
        vevent.add("summary", event.summary)
        vevent.add("status", event.status)
        if event.meeting_url:
            vevent.add("location", event.meeting_url)
            vevent.add("url", event.meeting_url)
            vevent.add("description", f"Teleconsulta: {event.meeting_url}")
        if organizer:
            vevent.add("organizer", f"mailto:{organizer}", parameters={"cn": "Health&Med"})
        if attendee:
            vevent.add(
                "attendee",
                f"mailto:{attendee}",
                parameters={"role": "REQ-PARTICIPANT", "partstat": "ACCEPTED", "rsvp": "FALSE"},
            )
        cal.add_component(vevent)
    data: bytes = cal.to_ical()
    return data


class Messages:
    """Renders subjects (when an item is first sent, or listed while it waits) and whole
    messages (when it is sent)."""

    def __init__(self, settings: Settings) -> None:
        self.sender = settings.mail_from
        self.sender_address = parseaddr(settings.mail_from)[1]
        self.zone = ZoneInfo(settings.mail_timezone)
        self.zone_label = (
            "horário de Brasília"
            if settings.mail_timezone == "America/Sao_Paulo"
            else settings.mail_timezone
        )
        self.env = Environment(
            loader=PackageLoader("engine.notifications", "templates"),
            autoescape=select_autoescape(["html"], default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=False,
            # Package files, never edited under a running server: no stat() of each template
            # (and of the one it extends) every time a message is rendered.
            auto_reload=False,
        )

    # --- display values -----------------------------------------------------------------------
    def _local(self, ms: int) -> datetime:
        return _utc(ms).astimezone(self.zone)

    def short(self, ms: int) -> str:
        """``01/12/2026 10:00`` in the configured zone."""
        return self._local(ms).strftime("%d/%m/%Y %H:%M")

    def long(self, ms: int) -> str:
        """``terça-feira, 01/12/2026, às 10:00 (horário de Brasília)``."""
        at = self._local(ms)
        return f"{_WEEKDAYS[at.weekday()]}, {at:%d/%m/%Y}, às {at:%H:%M} ({self.zone_label})"

    def _values(self, context: dict[str, Any]) -> dict[str, Any]:
        values = dict(context)
        if "start_ms" in context:
            values["when"] = self.long(int(context["start_ms"]))
            values["when_short"] = self.short(int(context["start_ms"]))
        if "deadline_ms" in context:
            values["deadline"] = self.long(int(context["deadline_ms"]))
        if "hold_expires_ms" in context:
            values["hold_expires"] = self.long(int(context["hold_expires_ms"]))
        return values

    # --- rendering ----------------------------------------------------------------------------
    def subject(self, kind: str, context: dict[str, Any]) -> str:
        template = self.env.get_template(f"{kind}.txt")
        values = self._values(context)
        text = "".join(template.blocks["subject"](template.new_context(values)))
        return " ".join(text.split())

    def build(self, item: OutboxItem, to: Contact, names: dict[str, Contact]) -> EmailMessage:
        """The whole message for ``item`` to ``to``; ``names`` holds ``doctor``/``patient``."""
        context = item.context or {}
        values = self._values(context)
        values.update(names)
        values["recipient"] = to
        role = context.get("role")
        values["other"] = names.get("patient" if role == "doctor" else "doctor")
        text = self.env.get_template(f"{item.kind}.txt").render(values)
        html = self.env.get_template(f"{item.kind}.html").render(values)
        message = EmailMessage(policy=POLICY)
        message["Subject"] = item.subject
        message["From"] = self.sender
        message["To"] = formataddr((to.name, to.email))
        message["Date"] = format_datetime(_utc(max(item.created_at, item.due_at)))
        message["Message-ID"] = item.message_id
        message["Auto-Submitted"] = "auto-generated"
        message["X-Healthmed-Kind"] = item.kind
        message["Content-Language"] = "pt-BR"
        method = INVITATIONS.get(item.kind)
        ics = b""
        if method is not None:
            event = CalendarEvent(
                appointment_id=str(context["appointment_id"]),
                start=int(context["start_ms"]),
                end=int(context["end_ms"]),
                status="CANCELLED" if method == "CANCEL" else "CONFIRMED",
                sequence=int(context.get("sequence", 0)),
                summary=self.summary(values["other"]),
                changed_at=item.created_at,
                meeting_url=context.get("meeting_url"),
            )
            ics = calendar([event], method=method, organizer=self.sender_address, attendee=to.email)
        invitation = ics.decode()
        message.set_content(text)
        message.make_alternative(boundary=boundary((text, html, invitation)))
        message.add_alternative(html, subtype="html")
        if method is not None:
            message.add_alternative(
                invitation, subtype="calendar", params={"method": method, "name": "invite.ics"}
            )
        return message

    @staticmethod
    def summary(other: Contact | None) -> str:
        return f"Teleconsulta com {other.name}" if other else "Teleconsulta Health&Med"
