"""Notifications and calendar (docs/API.md "Notifications and calendar"): the user's messages,
their private iCalendar feed, its rotation and the public feed itself. Handlers only
translate; :class:`engine.notifications.Notifications` decides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.status_codes import HTTP_200_OK

from engine.errors import NotFound
from engine.notifications import CalendarLink, NotificationPage
from gateway.problems import problems
from gateway.routes._paging import LIMIT_DEFAULT, Cursor, Limit

if TYPE_CHECKING:
    from engine.principal import Principal
    from engine.runtime import Engine

_TAGS = ["notifications"]

_PAGE_EXAMPLE = {
    "items": [
        {
            "id": "3f1c9a0e5b7d4e21a8c6f0b2d4e6a8c0",
            "kind": "appointment.confirmed",
            "channel": "email",
            "to": "maria@example.com",
            "subject": "Consulta confirmada: 01/12/2026 10:00",
            "status": "sent",
            "created_at": "2026-11-30T14:02:11Z",
            "sent_at": "2026-11-30T14:02:12Z",
        },
        {
            "id": "9b2e7c1d3f5a4b6c8d0e2f4a6b8c0d1e",
            "kind": "appointment.reminder",
            "channel": "email",
            "to": "maria@example.com",
            "subject": "Lembrete: consulta 01/12/2026 10:00",
            "status": "queued",
            "created_at": "2026-11-30T14:02:11Z",
        },
    ],
    "next_cursor": None,
}
_FEED_EXAMPLE = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Health&Med//healthmed 1.0//PT-BR\r\n"
    "BEGIN:VEVENT\r\nUID:01JDX0Q5W7Z8@healthmed\r\nDTSTART:20261201T130000Z\r\n"
    "DTEND:20261201T135000Z\r\nSEQUENCE:0\r\nSTATUS:CONFIRMED\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)
_FEED_URL = "https://api.healthmed.example/v1/calendar/q8Xk2...43 characters....ics"


def _feed_url(request: Request[Any, Any, Any], token: str) -> CalendarLink:
    return CalendarLink(url=f"{str(request.base_url).rstrip('/')}/v1/calendar/{token}.ics")


def _link(description: str, *, example: str = "feed URL") -> ResponseSpec:
    """The documented answer of the two routes that give the feed URL (:func:`_feed_url`)."""
    return ResponseSpec(
        data_container=CalendarLink,
        description=description,
        examples=[Example(summary=example, value={"url": _FEED_URL})],
    )


@get(
    "/v1/me/notifications",
    tags=_TAGS,
    summary="The messages sent (or queued) to me, newest first",
    responses={
        200: ResponseSpec(
            data_container=NotificationPage,
            description="A page of messages",
            examples=[
                Example(summary="a sent confirmation and a queued reminder", value=_PAGE_EXAMPLE)
            ],
        ),
        **problems(401, 422),
    },
)
async def my_notifications(
    engine: Engine, principal: Principal, limit: Limit = LIMIT_DEFAULT, cursor: Cursor = None
) -> NotificationPage:
    """Every e-mail of docs/API.md's table addressed to the caller: `status` is `queued` (waiting
    for its time or a retry), `sent` (the mail server accepted it) or `failed` (given up after
    `HEALTHMED_MAIL_MAX_ATTEMPTS`). `sent_at` only once sent. Paginated with `limit` and the
    opaque `cursor` (422 `invalid_cursor` for a cursor this route did not give)."""
    return await engine.notifications.outbox.list_for(principal, limit=limit, cursor=cursor)


@get(
    "/v1/me/calendar",
    tags=_TAGS,
    summary="My private iCalendar feed URL",
    responses={200: _link("The feed URL (the same on every call until rotated)"), **problems(401)},
)
async def my_calendar(
    engine: Engine, principal: Principal, request: Request[Any, Any, Any]
) -> CalendarLink:
    """Subscribe a calendar application (Google Calendar, Outlook, Apple Calendar) to this
    URL: it lists the caller's confirmed (`STATUS:CONFIRMED`) and requested
    (`STATUS:TENTATIVE`) appointments from 30 days back to 365 days ahead. Anyone holding the
    URL can read the feed: treat it as a secret, and rotate it if it leaks."""
    return _feed_url(request, await engine.notifications.calendars.token(principal))


@post(
    "/v1/me/calendar/rotate",
    tags=_TAGS,
    summary="Replace my feed URL (the old one answers 404 from now on)",
    status_code=HTTP_200_OK,
    responses={200: _link("The new feed URL", example="new feed URL"), **problems(401)},
)
async def rotate_calendar(
    engine: Engine, principal: Principal, request: Request[Any, Any, Any]
) -> CalendarLink:
    """A new unguessable token; the previous URL stops working in the same store
    transaction."""
    return _feed_url(request, await engine.notifications.calendars.rotate(principal))


@get(
    "/v1/calendar/{name:str}",
    tags=_TAGS,
    summary="An iCalendar feed (public: the token in the URL is the credential)",
    security=[{}],
    media_type="text/calendar",
    responses={
        200: ResponseSpec(
            data_container=str,
            media_type="text/calendar",
            description="RFC 5545 calendar: one VEVENT an appointment, `UID` "
            "`<appointment id>@healthmed`, times in UTC, the owner's own meeting URL",
            examples=[
                Example(
                    summary="one confirmed consultation",
                    value=_FEED_EXAMPLE,
                )
            ],
        ),
        **problems(404),
    },
)
async def calendar_feed(engine: Engine, name: str) -> Response[bytes]:
    """`name` is `<token>.ics`. An unknown, rotated or malformed token: 404 (the same answer
    for all three)."""
    token, dot, extension = name.rpartition(".")
    if not dot or extension != "ics":
        raise NotFound("calendar not found", code="calendar_not_found")
    body = await engine.notifications.calendars.feed(token)
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


route_handlers = [my_notifications, my_calendar, rotate_calendar, calendar_feed]
