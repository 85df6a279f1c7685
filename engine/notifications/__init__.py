"""Notifications that are never lost: an outbox in the store, e-mail transports, messages,
reminders and calendar feeds.

Other modules queue a message inside their own store transaction::

    ops = [*change_ops, *notifications.outbox.put_ops(
        "password.reset", account_id, {"code": code, "valid_minutes": 30},
        key=reset_id, at=now, to=email)]
    await store.transact(ops)
    notifications.outbox.wake()          # optional: send now rather than at the next poll

Read :mod:`._outbox` for the delivery guarantee, :mod:`._transports` for
``HEALTHMED_MAIL_URL``, :mod:`._messages` for templates and invitations and
:mod:`._calendar` for the feeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.notifications._calendar import CalendarFeeds, CalendarSource
from engine.notifications._messages import INVITATIONS, Messages, calendar, uid
from engine.notifications._model import (
    KINDS,
    CalendarEvent,
    CalendarLink,
    Contact,
    Kind,
    NotificationPage,
    NotificationView,
    OutboxItem,
)
from engine.notifications._outbox import INDEX, ContactsPort, Outbox, message_id
from engine.notifications._transports import (
    FileTransport,
    SesTransport,
    SmtpTransport,
    Transport,
    open_transport,
)
from engine.notifications.mail_url import MailTarget, parse_mail_url
from engine.timeutil import now_ms

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from engine.config import Settings
    from engine.principal import Principal
    from engine.store import Store


class _NoCalendar:
    async def calendar_events(self, user_id: str, start: int, end: int) -> list[CalendarEvent]:
        return []


class Notifications:
    """The facade: ``outbox`` (queue, drain), ``calendars`` (feeds), and LGPD."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        contacts: ContactsPort,
        *,
        transport: Transport | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        url = settings.mail_url or f"file://{settings.data_dir / 'mail'}"
        self.transport = transport or open_transport(
            url, settings.mail_from, timeout=settings.mail_lease_seconds / 2
        )
        self.messages = Messages(settings)
        self.outbox = Outbox(settings, store, self.messages, contacts, self.transport, clock=clock)
        self.calendars = CalendarFeeds(store, _NoCalendar(), clock=clock)

    def attach(
        self,
        calendar_source: CalendarSource,
        guards: dict[str, Callable[[OutboxItem], Awaitable[bool]]],
    ) -> None:
        """Wire the modules whose data messages and feeds read (booking)."""
        self.calendars.source = calendar_source
        self.outbox.guards.update(guards)

    async def export_user(self, principal: Principal) -> dict[str, Any]:
        return await self.outbox.export_user(principal)

    async def erase_user(self, principal: Principal) -> None:
        await self.outbox.erase_user(principal)
        await self.calendars.erase_user(principal)

    async def close(self) -> None:
        await self.transport.close()


__all__ = [
    "INDEX",
    "INVITATIONS",
    "KINDS",
    "CalendarEvent",
    "CalendarFeeds",
    "CalendarLink",
    "CalendarSource",
    "Contact",
    "ContactsPort",
    "FileTransport",
    "Kind",
    "MailTarget",
    "Messages",
    "NotificationPage",
    "NotificationView",
    "Notifications",
    "Outbox",
    "OutboxItem",
    "SesTransport",
    "SmtpTransport",
    "Transport",
    "calendar",
    "message_id",
    "open_transport",
    "parse_mail_url",
    "uid",
]
