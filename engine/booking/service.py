"""The booking service: one facade naming every booking operation.

:class:`BookingService` builds one :class:`~engine.booking._context.BookingContext` and the
parts that hold it, and delegates each public operation to the part that owns it:

==========================  ===================================  ===============================
part                        module                               operations
==========================  ===================================  ===============================
``slots``                   :mod:`engine.booking._slots`         create, edit, delete, list own,
                                                                 public agenda
``reservations``            :mod:`engine.booking._reserve`       ``request_appointment``
``decisions``               :mod:`engine.booking._decisions`     accept, refuse, cancel, meeting,
                                                                 rate (and expire one)
``appointments``            :mod:`engine.booking._appointments`  get, list, reminder guard,
                                                                 calendar feed, export
``moves``                   :mod:`engine.booking._moves`         reschedule; accept, refuse and
                                                                 lapse of a pending move
``time_off``                :mod:`engine.booking._time_off`      create, list, delete time off
``erasure``                 :mod:`engine.booking._erasure`       erase a user (LGPD)
``expiry``                  :mod:`engine.booking._expiry`        the expiry sweep of requests
``ctx.rebuild``             :mod:`engine.booking._rebuild`       rebuild Redis from the store
==========================  ===================================  ===============================

A new operation goes into the part it belongs to (or a new part: one class per module, taking
the context and the parts it uses in ``__init__``) and gets one delegating method here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

from engine.booking._appointments import Appointments
from engine.booking._context import BookingContext
from engine.booking._decisions import Decisions
from engine.booking._erasure import Erasure
from engine.booking._expiry import Expiry
from engine.booking._moves import Moves
from engine.booking._reserve import Reservations
from engine.booking._slots import Slots
from engine.booking._time_off import TimeOffs
from engine.booking._views import Views

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from engine.booking._appointments import AppointmentQuery
    from engine.booking._context import AccountsPort, BookingOptions, WaitlistPort
    from engine.booking._model import (
        Agenda,
        AppointmentPage,
        AppointmentView,
        CreateSlots,
        MeetingView,
        SlotPage,
        SlotView,
        TimeOffBody,
        TimeOffView,
    )
    from engine.config import Settings
    from engine.notifications import CalendarEvent, OutboxItem
    from engine.principal import Principal
    from engine.store import Store


class BookingService:
    """Slots, appointments and their decisions (see the module docstring for who does what)."""

    def __init__(
        self, settings: Settings, store: Store, redis: Redis, accounts: AccountsPort,
        **options: Unpack[BookingOptions],
    ) -> None:  # fmt: skip
        self.ctx = ctx = BookingContext(settings, store, redis, accounts, **options)
        self.views = Views(ctx)
        self.slots = Slots(ctx)
        self.reservations = Reservations(ctx, self.views)
        self.moves = Moves(ctx, self.views, self.reservations)
        self.decisions = Decisions(ctx, self.views, self.moves)
        self.time_off = TimeOffs(ctx, self.slots, self.decisions, self.moves)
        self.appointments = Appointments(ctx, self.views)
        self.erasure = Erasure(ctx, self.appointments, self.decisions, self.slots)
        self.expiry = Expiry(ctx, self.decisions, self.moves)

    # --- availability (Slots) -----------------------------------------------------------------
    async def create_slots(self, principal: Principal, body: CreateSlots) -> list[SlotView]:
        """Publish explicit slots or a weekly rule's, all or nothing."""
        return await self.slots.create(principal, body)

    async def list_own_slots(
        self, principal: Principal, start: str | None, end: str | None
    ) -> list[SlotView]:
        """The calling doctor's slots with their full status."""
        return await self.slots.list_own(principal, start, end)

    async def own_slots_page(
        self,
        principal: Principal,
        start: str | None,
        end: str | None,
        *,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SlotPage:
        """The calling doctor's slots a page at a time (``GET /v1/me/slots``)."""
        return await self.slots.own_page(principal, start, end, limit=limit, cursor=cursor)

    async def update_slot(
        self, principal: Principal, slot_id: str, start: str, end: str
    ) -> SlotView:
        """Move an open slot."""
        return await self.slots.update(principal, slot_id, start, end)

    async def delete_slot(self, principal: Principal, slot_id: str) -> None:
        """Remove an open slot."""
        await self.slots.delete(principal, slot_id)

    async def agenda(self, doctor_id: str, start: str | None, end: str | None) -> Agenda:
        """A doctor's public agenda with the price."""
        return await self.slots.agenda(doctor_id, start, end)

    # --- reservation (Reservations) -----------------------------------------------------------
    async def request_appointment(
        self, principal: Principal, slot_id: str, idempotency_key: str | None = None
    ) -> AppointmentView:
        """Reserve a slot for the calling patient (reserve.lua, claim.lua, the store)."""
        return await self.reservations.request(principal, slot_id, idempotency_key)

    # --- decisions (Decisions) ----------------------------------------------------------------
    async def accept(self, principal: Principal, appointment_id: str) -> AppointmentView:
        """Confirm a request, or apply a confirmed appointment's pending move (its doctor)."""
        return await self.decisions.accept(principal, appointment_id)

    async def refuse(
        self, principal: Principal, appointment_id: str, reason: str | None = None
    ) -> AppointmentView:
        """Refuse a request (its doctor), the slot reopens; or drop a pending move."""
        return await self.decisions.refuse(principal, appointment_id, reason)

    async def cancel(
        self, principal: Principal, appointment_id: str, justification: str | None
    ) -> AppointmentView:
        """Cancel an active appointment (its patient or its doctor)."""
        return await self.decisions.cancel(principal, appointment_id, justification)

    # --- moves (Moves) ------------------------------------------------------------------------
    async def reschedule(
        self, principal: Principal, appointment_id: str, slot_id: str
    ) -> AppointmentView:
        """Move an appointment to another slot of its doctor (its patient): a request at once,
        a confirmed one as a pending move the doctor accepts or refuses (accept, refuse)."""
        return await self.moves.reschedule(principal, appointment_id, slot_id)

    # --- time off (TimeOffs) ------------------------------------------------------------------
    async def create_time_off(self, principal: Principal, body: TimeOffBody) -> TimeOffView:
        """Take time off (its doctor): clears the range; later slot creations skip it."""
        return await self.time_off.create(principal, body)

    async def list_time_off(self, principal: Principal) -> list[TimeOffView]:
        """The calling doctor's time off."""
        return await self.time_off.list(principal)

    async def delete_time_off(self, principal: Principal, time_off_id: str) -> None:
        """Remove a time-off range (nothing it removed comes back)."""
        await self.time_off.delete(principal, time_off_id)

    async def meeting(self, principal: Principal, appointment_id: str) -> MeetingView:
        """The caller's meeting link of a confirmed appointment."""
        return await self.decisions.meeting(principal, appointment_id)

    async def rate(
        self, principal: Principal, appointment_id: str, stars: int, comment: str | None
    ) -> dict[str, object]:
        """Rate a confirmed appointment once it ended (its patient)."""
        return await self.decisions.rate(principal, appointment_id, stars, comment)

    # --- reading (Appointments) ---------------------------------------------------------------
    async def get_appointment(self, principal: Principal, appointment_id: str) -> AppointmentView:
        """One appointment, for either participant."""
        return await self.appointments.get(principal, appointment_id)

    async def list_appointments(
        self, principal: Principal, **query: Unpack[AppointmentQuery]
    ) -> AppointmentPage:
        """The caller's appointments by slot start, a page at a time."""
        return await self.appointments.page(principal, **query)

    async def reminder_current(self, item: OutboxItem) -> bool:
        """Outbox guard: is this reminder's appointment still confirmed at that time?"""
        return await self.appointments.reminder_current(item)

    async def calendar_events(self, user_id: str, start: int, end: int) -> list[CalendarEvent]:
        """The user's active appointments starting in ``[start, end)``, for their feed."""
        return await self.appointments.calendar_events(user_id, start, end)

    # --- LGPD (PrivacyPart) -------------------------------------------------------------------
    async def export_user(self, principal: Principal) -> dict[str, Any]:
        """Every appointment the user took part in."""
        return await self.appointments.export_user(principal)

    async def erase_user(self, principal: Principal) -> None:
        """Cancel the user's active appointments, remove a doctor's open slots."""
        await self.erasure.erase_user(principal)

    # --- the waitlist -------------------------------------------------------------------------
    def use_waitlist(self, waitlist: WaitlistPort) -> None:
        """Route every freed slot (cancel, refuse, expiry, rollback) and every new or edited
        slot through the waitlist's release script (engine.waitlist)."""
        self.ctx.waitlist = waitlist

    # --- rebuilding Redis from the store (Rebuild) --------------------------------------------
    async def rebuild(self, *, force: bool = False) -> int:
        """Rebuild every doctor (only those whose marker is missing, unless ``force``);
        the number of slots loaded."""
        return await self.ctx.rebuild.every_doctor(force=force)

    async def rebuild_doctor(self, doctor_id: str, *, force: bool = False) -> int:
        """Rebuild one doctor; the number of slots loaded."""
        return await self.ctx.rebuild.doctor(doctor_id, force=force)

    async def retry_invalidations(self) -> None:
        """Invalidate the doctors a committed change could not reach while Redis was down."""
        await self.ctx.rebuild.retry_invalidations()

    # --- expiry of undecided requests (Expiry) ------------------------------------------------
    async def expire_due(self, *, max_doctors: int = 100, max_items: int = 50) -> int:
        """Expire the requests past their deadline (one sweep); the number expired."""
        return await self.expiry.sweep_once(max_doctors=max_doctors, max_items=max_items)

    async def reindex_deadlines(self) -> int:
        """Re-index every doctor's earliest deadline for the expiry sweep."""
        return await self.expiry.reindex()

    async def run_expiry(self) -> None:
        """The expiry sweep, every ``sweep_interval_seconds`` until cancelled."""
        await self.expiry.run()
