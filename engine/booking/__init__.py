"""Booking: slots, atomic reservations (Redis + Lua), decisions written through to the store,
meeting links, ratings, rebuilding Redis from the store and the expiry of undecided requests.

Read :mod:`engine.booking.service` for the shape (the facade and which part owns what);
``request_appointment`` lives in :mod:`engine.booking._reserve` (``Reservations.request``).
The ``*.lua`` headers describe the atomic steps, :mod:`engine.booking._scripts` their typed
replies, and :mod:`engine.booking._store` the durable layout and its double-booking guard.
"""

from __future__ import annotations

from engine.booking._context import DECISION_LEAD_MS, AccountsPort, doctor_of_slot
from engine.booking._meeting import JitsiMeetings, MeetingProvider
from engine.booking._model import (
    Agenda,
    Appointment,
    AppointmentPage,
    AppointmentStatus,
    AppointmentView,
    BookRequest,
    CancelBody,
    CreateSlots,
    MeetingView,
    Price,
    PublicSlot,
    RatingBody,
    RefuseBody,
    RescheduleBody,
    Slot,
    SlotList,
    SlotPage,
    SlotTimes,
    SlotView,
    TimeOffBody,
    TimeOffList,
    TimeOffView,
    WeeklyRule,
)
from engine.booking._rules import MAX_SLOT_MS, MAX_SLOTS_PER_CALL, expand_rule, explicit_slots
from engine.booking.service import BookingService

__all__ = [
    "DECISION_LEAD_MS",
    "MAX_SLOTS_PER_CALL",
    "MAX_SLOT_MS",
    "AccountsPort",
    "Agenda",
    "Appointment",
    "AppointmentPage",
    "AppointmentStatus",
    "AppointmentView",
    "BookRequest",
    "BookingService",
    "CancelBody",
    "CreateSlots",
    "JitsiMeetings",
    "MeetingProvider",
    "MeetingView",
    "Price",
    "PublicSlot",
    "RatingBody",
    "RefuseBody",
    "RescheduleBody",
    "Slot",
    "SlotList",
    "SlotPage",
    "SlotTimes",
    "SlotView",
    "TimeOffBody",
    "TimeOffList",
    "TimeOffView",
    "WeeklyRule",
    "doctor_of_slot",
    "expand_rule",
    "explicit_slots",
]
