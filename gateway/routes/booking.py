"""Booking (docs/API.md "availability" and "Appointments"): slots, the public agenda, appointments.
Handlers only translate; :class:`engine.booking.BookingService` decides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, get_args

import msgspec
from litestar import delete, get, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, Parameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from engine.booking import (
    Agenda,
    AppointmentPage,
    AppointmentStatus,
    AppointmentView,
    BookRequest,
    CancelBody,
    CreateSlots,
    MeetingView,
    RatingBody,
    RefuseBody,
    SlotList,
    SlotPage,
    SlotTimes,
    SlotView,
)
from gateway.problems import problems
from gateway.routes._paging import LIMIT_DEFAULT, NextCursor, PagerLimit
from gateway.telemetry import BOOKINGS, DECISIONS, error_code, event

if TYPE_CHECKING:
    from engine.principal import Principal
    from engine.runtime import Engine

_TIME = {"format": "date-time"}
From = Annotated[
    str | None,
    QueryParameter(
        name="from",
        description="RFC 3339 start of the range, with an offset (422 `invalid_time`)",
        schema_extra=_TIME,
    ),
]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        description="the same key from the same patient returns the first response; "
        "reused for another slot: 422",
    ),
]
To = Annotated[
    str | None,
    QueryParameter(
        name="to",
        description="RFC 3339 end of the range (exclusive), with an offset (422 `invalid_time`)",
        schema_extra=_TIME,
    ),
]


# --- availability -----------------------------------------------------------------------------
@post(
    "/v1/me/slots",
    tags=["availability"],
    summary="Publish slots (explicit or a weekly rule)",
    status_code=HTTP_201_CREATED,
    responses=problems(401, 403, 409, 413, 422, 503),
)
async def create_slots(engine: Engine, doctor: Principal, data: CreateSlots) -> SlotList:
    """`{slots: [{start, end}]}` or `{rule: {from, to, weekdays, start_time, end_time,
    timezone?, duration_minutes=50, gap_minutes=10, skip_holidays=false}}`. At most 500 slots;
    past, zero-length or over 4 h: 422. Any overlap (existing slots or within the call): 409
    `slot_overlap`, none created. Rules are daylight-saving safe (local times of `timezone`,
    by default the doctor's profile `timezone`); `skip_holidays` leaves out Brazil's national
    holidays and those of the doctor's `uf`. Slots inside the doctor's time off are skipped
    (explicit ones too: the answer lists only the slots created, possibly none)."""
    return SlotList(items=await engine.booking.create_slots(doctor, data))


@get(
    "/v1/me/slots",
    tags=["availability"],
    summary="Own slots with full status",
    responses=problems(401, 403, 422),
)
async def my_slots(
    engine: Engine,
    doctor: Principal,
    from_: From = None,
    to: To = None,
    limit: PagerLimit = LIMIT_DEFAULT,
    cursor: NextCursor = None,
) -> SlotPage:
    """Status `open` | `requested` | `booked` with `appointment_id` (a `requested` slot may
    be a confirmed appointment's pending move), in start order, a page at a time (`limit`,
    default 20, at most 100; `next_cursor` while more remain), and the doctor's `timezone`.
    Default range: from now, 62 days; at most 366 days."""
    page = await engine.booking.own_slots_page(doctor, from_, to, limit=limit, cursor=cursor)
    profile = await engine.accounts.get_doctor(doctor.user_id)
    return msgspec.structs.replace(page, timezone=profile.timezone)


@patch(
    "/v1/me/slots/{slot_id:str}",
    tags=["availability"],
    summary="Move an open slot",
    responses=problems(401, 403, 404, 409, 422, 503),
)
async def edit_slot(engine: Engine, doctor: Principal, slot_id: str, data: SlotTimes) -> SlotView:
    """Only an `open` slot (409 `slot_not_open`); the new times are overlap-checked (409
    `slot_overlap`)."""
    return await engine.booking.update_slot(doctor, slot_id, data.start, data.end)


@delete(
    "/v1/me/slots/{slot_id:str}",
    tags=["availability"],
    summary="Delete an open slot",
    status_code=HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409, 503),
)
async def delete_slot(engine: Engine, doctor: Principal, slot_id: str) -> None:
    """Only an `open` slot (409 `slot_not_open`)."""
    await engine.booking.delete_slot(doctor, slot_id)


@get(
    "/v1/doctors/{doctor_id:str}/slots",
    tags=["availability"],
    summary="A doctor's public agenda",
    responses=problems(401, 404, 422),
)
async def agenda(
    engine: Engine,
    principal: Principal,
    doctor_id: str,
    from_: From = None,
    to: To = None,
) -> Agenda:
    """Slots `open` or `taken` with the doctor's price; default the next 14 days, at most 62
    (422)."""
    return await engine.booking.agenda(doctor_id, from_, to)


# --- appointments -----------------------------------------------------------------------------
_CREATED = ResponseSpec(data_container=AppointmentView, description="The requested appointment")


@post(
    "/v1/appointments",
    tags=["appointments"],
    summary="Request an appointment (reserve a slot)",
    status_code=HTTP_201_CREATED,
    responses={201: _CREATED, **problems(401, 403, 404, 409, 422, 503)},
)
async def request_appointment(
    engine: Engine,
    patient: Principal,
    data: BookRequest,
    idempotency_key: IdempotencyKey = None,
) -> AppointmentView:
    """201 `status: "requested"` with `decision_deadline` (the earlier of the request TTL and
    15 minutes before the start; requests closer to the start than that: 409
    `slot_unavailable`). Slot not open: 409 `slot_unavailable`; an overlapping active
    appointment of yours: 409 `patient_overlap`; slot in the past: 422; doctors: 403.
    `Idempotency-Key`: a retry with the same key returns the first response (status and
    body); the same key for another slot is 422 `idempotency_key_reused`."""
    try:
        view = await engine.booking.request_appointment(patient, data.slot_id, idempotency_key)
    except Exception as exc:
        BOOKINGS.labels(error_code(exc)).inc()
        raise
    BOOKINGS.labels("requested").inc()
    event("appointment.requested", slot_id=data.slot_id)
    return view


@get(
    "/v1/appointments",
    tags=["appointments"],
    summary="Own appointments",
    responses=problems(401, 422),
)
async def list_appointments(
    engine: Engine,
    principal: Principal,
    status: str | None = Parameter(
        default=None,
        description="filter by status (422 `invalid_status`)",
        schema_extra={"enum": list(get_args(AppointmentStatus))},
    ),
    from_: From = None,
    to: To = None,
    limit: PagerLimit = LIMIT_DEFAULT,
    cursor: NextCursor = None,
) -> AppointmentPage:
    """The caller's appointments (as patient or doctor) by slot start; `from`/`to` bound the
    start."""
    return await engine.booking.list_appointments(
        principal, status=status, start=from_, end=to, limit=limit, cursor=cursor
    )


@get(
    "/v1/appointments/{appointment_id:str}",
    tags=["appointments"],
    summary="One appointment",
    responses=problems(401, 404),
)
async def appointment(engine: Engine, principal: Principal, appointment_id: str) -> AppointmentView:
    """Its two participants only (404 for anyone else)."""
    return await engine.booking.get_appointment(principal, appointment_id)


@post(
    "/v1/appointments/{appointment_id:str}/accept",
    tags=["appointments"],
    summary="Accept a request, or a confirmed appointment's pending move (its doctor)",
    status_code=HTTP_200_OK,
    responses=problems(401, 403, 404, 409, 503),
)
async def accept(engine: Engine, principal: Principal, appointment_id: str) -> AppointmentView:
    """→ `confirmed` with `meeting: {url, starts_at, ends_at}`. On a `confirmed` appointment
    with a `pending_move`: applies it (the new `slot`, the meeting moved with it, the old slot
    open; `appointment.rescheduled` to both). Patients: 403; another doctor: 404; not
    `requested` and no pending move (or past its deadline): 409 `invalid_transition`."""
    with DECISIONS.labels("accept").time():
        view = await engine.booking.accept(principal, appointment_id)
    event("appointment.accepted", appointment_id=appointment_id)
    return view


@post(
    "/v1/appointments/{appointment_id:str}/refuse",
    tags=["appointments"],
    summary="Refuse a request, or a confirmed appointment's pending move (its doctor)",
    status_code=HTTP_200_OK,
    responses=problems(401, 403, 404, 409, 422, 503),
)
async def refuse(
    engine: Engine, principal: Principal, appointment_id: str, data: RefuseBody | None = None
) -> AppointmentView:
    """`{reason?}` → `refused`; the slot reopens. On a `confirmed` appointment with a
    `pending_move`: drops it (the new slot opens; `appointment.move_refused` to the patient)
    and it stays `confirmed` where it was. Otherwise: 409 `invalid_transition`."""
    reason = data.reason if data is not None else None
    with DECISIONS.labels("refuse").time():
        view = await engine.booking.refuse(principal, appointment_id, reason)
    event("appointment.refused", appointment_id=appointment_id)
    return view


@post(
    "/v1/appointments/{appointment_id:str}/cancel",
    tags=["appointments"],
    summary="Cancel (its patient or its doctor)",
    status_code=HTTP_200_OK,
    responses=problems(401, 403, 404, 409, 422, 503),
)
async def cancel(
    engine: Engine, principal: Principal, appointment_id: str, data: CancelBody
) -> AppointmentView:
    """`{justification}` of 10 to 1000 characters (422 otherwise) → `cancelled`, with
    `cancellation.by` the caller's role (`patient` or `doctor`); the other side gets
    `appointment.cancelled` live and by e-mail. The slot reopens if it has not started. Only
    `requested` or `confirmed` before the end (409)."""
    view = await engine.booking.cancel(principal, appointment_id, data.justification)
    event("appointment.cancelled", appointment_id=appointment_id, by=principal.role)
    return view


@get(
    "/v1/appointments/{appointment_id:str}/meeting",
    tags=["appointments"],
    summary="The caller's meeting link",
    responses=problems(401, 404, 409),
)
async def meeting(engine: Engine, principal: Principal, appointment_id: str) -> MeetingView:
    """Participants only; 409 `not_confirmed` unless confirmed. The link carries the caller's
    own token, valid from 10 minutes before the start until the end."""
    return await engine.booking.meeting(principal, appointment_id)


@post(
    "/v1/appointments/{appointment_id:str}/rating",
    tags=["appointments"],
    summary="Rate a past appointment (its patient)",
    status_code=HTTP_201_CREATED,
    responses=problems(401, 403, 404, 409, 422),
)
async def rate(
    engine: Engine, principal: Principal, appointment_id: str, data: RatingBody
) -> dict[str, Any]:
    """`{stars: 1..5, comment?}`; only a confirmed appointment whose end has passed (409
    `rating_too_early` before, `not_confirmed` otherwise), once (409 `already_rated`)."""
    return dict(await engine.booking.rate(principal, appointment_id, data.stars, data.comment))


route_handlers = [
    create_slots,
    my_slots,
    edit_slot,
    delete_slot,
    agenda,
    request_appointment,
    list_appointments,
    appointment,
    accept,
    refuse,
    cancel,
    meeting,
    rate,
]
