"""Private iCalendar feeds: ``GET /v1/me/calendar``, rotation, ``/v1/calendar/<token>.ics``.

Layout (single table):

==========================  ===========  =================================================
pk                          sk           what
==========================  ===========  =================================================
``USER#<id>``               ``CALFEED``  the user's current feed token (shown in their URL)
``CALFEED#<sha256(token)>`` ``CALFEED``  lookup: token → user id (only the hash is a key)
==========================  ===========  =================================================

A token is 32 random bytes (``secrets.token_urlsafe``): unguessable, and the only thing the
public feed route accepts. Rotation replaces both items in one transaction, so the old URL
answers ``NotFound`` from the moment the new one is returned. The feed shows only the token owner's
appointments (their confirmed ones as ``CONFIRMED``, requested ones as ``TENTATIVE``) from
30 days back to 365 days ahead, each with that user's own meeting link.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Protocol

from engine.errors import NotFound, Unavailable
from engine.notifications._messages import calendar
from engine.store import ConditionFailed, Delete, Item, Put
from engine.store import keys as store_keys
from engine.store.keys import feed_lookup_pk as _lookup_pk
from engine.timeutil import now_ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.notifications._model import CalendarEvent
    from engine.principal import Principal
    from engine.store import Op, Store

FEED_SK = store_keys.FEED_SK
PAST_MS = 30 * 86_400_000
AHEAD_MS = 365 * 86_400_000
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


class CalendarSource(Protocol):
    """The appointments a feed shows (:meth:`engine.booking.BookingService.calendar_events`)."""

    async def calendar_events(self, user_id: str, start: int, end: int) -> list[CalendarEvent]:
        """The user's requested and confirmed appointments starting in ``[start, end)``."""


class CalendarFeeds:
    def __init__(
        self, store: Store, source: CalendarSource, *, clock: Callable[[], int] = now_ms
    ) -> None:
        self.store = store
        self.source = source
        self.clock = clock

    async def token(self, principal: Principal) -> str:
        """The caller's feed token, made on first use."""
        for _ in range(3):
            current = await self.store.get(store_keys.user_pk(principal.user_id), FEED_SK)
            if current is not None:
                return str(current.data["token"])
            token = secrets.token_urlsafe(32)
            try:
                await self.store.transact(self._ops(principal.user_id, token, "absent"))
            except ConditionFailed:
                continue  # a concurrent first call made one: read it
            return token
        raise Unavailable("the calendar feed kept changing", code="calendar_busy")

    async def rotate(self, principal: Principal) -> str:
        """A new token; the old one stops working in the same transaction."""
        for _ in range(3):
            current = await self.store.get(store_keys.user_pk(principal.user_id), FEED_SK)
            token = secrets.token_urlsafe(32)
            ops = self._ops(principal.user_id, token, current.version if current else "absent")
            if current is not None:
                ops.append(Delete(pk=_lookup_pk(str(current.data["token"])), sk=FEED_SK))
            try:
                await self.store.transact(ops)
            except ConditionFailed:
                continue
            return token
        raise Unavailable("the calendar feed kept changing", code="calendar_busy")

    def _ops(self, user_id: str, token: str, expect: int | str) -> list[Op]:
        at = self.clock()
        return [
            Put(
                item=Item(
                    pk=store_keys.user_pk(user_id), sk=FEED_SK, data={"token": token, "at": at}
                ),
                expect=expect,  # type: ignore[arg-type]
            ),
            Put(
                item=Item(pk=_lookup_pk(token), sk=FEED_SK, data={"user_id": user_id}),
                expect="absent",
            ),
        ]

    async def feed(self, token: str) -> bytes:
        """The ``text/calendar`` body of the feed ``token`` names; ``NotFound`` for any other
        token."""
        if not _TOKEN.fullmatch(token):
            raise NotFound("calendar not found", code="calendar_not_found")
        lookup = await self.store.get(_lookup_pk(token), FEED_SK)
        if lookup is None:
            raise NotFound("calendar not found", code="calendar_not_found")
        user_id = str(lookup.data["user_id"])
        owner = await self.store.get(store_keys.user_pk(user_id), FEED_SK)
        if owner is None or owner.data.get("token") != token:
            raise NotFound("calendar not found", code="calendar_not_found")
        now = self.clock()
        events = await self.source.calendar_events(user_id, now - PAST_MS, now + AHEAD_MS)
        return calendar(events, name="Health&Med")

    async def erase_user(self, principal: Principal) -> None:
        current = await self.store.get(store_keys.user_pk(principal.user_id), FEED_SK)
        if current is None:
            return
        await self.store.transact(
            [
                Delete(pk=store_keys.user_pk(principal.user_id), sk=FEED_SK),
                Delete(pk=_lookup_pk(str(current.data["token"])), sk=FEED_SK),
            ]
        )
