"""Reading appointments: one, the caller's list, the outbox's reminder guard, the calendar
feed, the LGPD export."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict, Unpack, get_args

import msgspec

from engine.booking import _store as layout
from engine.booking._model import (
    ACTIVE,
    Appointment,
    AppointmentPage,
    AppointmentStatus,
    AppointmentView,
)
from engine.errors import Invalid, NotFound
from engine.paging import LIMIT_DEFAULT, check_limit, scan
from engine.store import keys as store_keys
from engine.timeutil import parse_rfc3339

if TYPE_CHECKING:
    from engine.booking._context import BookingContext
    from engine.booking._views import Views
    from engine.notifications import CalendarEvent, OutboxItem
    from engine.principal import Principal, Role

_STATUSES = frozenset(get_args(AppointmentStatus))


class AppointmentQuery(TypedDict, total=False):
    """The filters of a listing of one's appointments."""

    status: str | None
    start: str | None
    """RFC 3339: appointments starting at or after it."""
    end: str | None
    """RFC 3339: appointments starting before it."""
    limit: int
    """1-100, default 20."""
    cursor: str | None
    """``next_cursor`` of the previous page."""


class Appointments:
    """Appointments as their participants read them."""

    def __init__(self, ctx: BookingContext, views: Views) -> None:
        self.ctx = ctx
        self.views = views

    async def get(self, principal: Principal, appointment_id: str) -> AppointmentView:
        """One appointment for either participant (``NotFound`` for anyone else)."""
        appt, _ = await self.ctx.participant(principal, appointment_id)
        return await self.views.view_named(appt, principal.user_id)

    async def page(
        self, principal: Principal, **query: Unpack[AppointmentQuery]
    ) -> AppointmentPage:
        """The caller's appointments by slot start; ``status`` and start range ``[from, to)``
        filters; ``limit`` 1-100; ``next_cursor`` while more remain."""
        status, start, end = query.get("status"), query.get("start"), query.get("end")
        limit, cursor = query.get("limit", LIMIT_DEFAULT), query.get("cursor")
        check_limit(limit)
        if status is not None and status not in _STATUSES:
            raise Invalid("unknown status", code="invalid_status")
        lo = parse_rfc3339(start, field="from") if start is not None else None
        hi = parse_rfc3339(end, field="to") if end is not None else None
        found, next_cursor = await scan(
            self.ctx.store,
            layout.user_pk(principal.user_id),
            store_keys.APPOINTMENT_PREFIX,
            cursor=cursor,
            limit=limit,
            keep=None if status is None else lambda item: item.data.get("status") == status,
            start=layout.index_sk(lo, "") if lo is not None else None,
            end=layout.index_sk(hi, "") if hi is not None else None,
            descending=False,
        )
        items = [
            await self.views.view_named(Appointment.from_data(item.data), principal.user_id)
            for item in found
        ]
        return AppointmentPage(items=items, next_cursor=next_cursor)

    async def all_of(self, user_id: str) -> list[Appointment]:
        """Every appointment ``user_id`` took part in."""
        items = await self.ctx.store.query(
            layout.user_pk(user_id), prefix=store_keys.APPOINTMENT_PREFIX
        )
        return [Appointment.from_data(item.data) for item in items]

    # --- notifications and calendar -----------------------------------------------------------
    async def reminder_current(self, item: OutboxItem) -> bool:
        """Outbox guard: a reminder is sent only while its appointment is confirmed and still
        starts when the reminder was made for (a cancelled or moved one sends none)."""
        context = item.context or {}
        try:
            appt, _ = await self.ctx.load_appointment(str(context.get("appointment_id", "")))
        except NotFound:
            return False
        return appt.status == "confirmed" and appt.start == context.get("start_ms")

    async def calendar_events(self, user_id: str, start: int, end: int) -> list[CalendarEvent]:
        """The user's requested and confirmed appointments starting in ``[start, end)``, as
        their calendar feed shows them (with their own meeting link)."""
        items = await self.ctx.store.query(
            layout.user_pk(user_id),
            prefix=store_keys.APPOINTMENT_PREFIX,
            start=layout.index_sk(start, ""),
            end=layout.index_sk(end, ""),
        )
        found = []
        for item in items:
            appt = Appointment.from_data(item.data)
            if appt.status in ACTIVE:
                role: Role = "doctor" if appt.doctor_id == user_id else "patient"
                found.append(self.ctx.notices.calendar_event(appt, role))
        return found

    # --- LGPD ---------------------------------------------------------------------------------
    async def export_user(self, principal: Principal) -> dict[str, Any]:
        """``{"appointments": [...]}``: every appointment the user took part in."""
        appointments = [
            await self.views.view_named(appt, principal.user_id)
            for appt in await self.all_of(principal.user_id)
        ]
        return {"appointments": msgspec.to_builtins(appointments)}
