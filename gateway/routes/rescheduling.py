"""Rescheduling and time off (docs/API.md "Rescheduling and time off"). Handlers only translate;
:class:`engine.booking.BookingService` decides (moves: :mod:`engine.booking._moves`, time off:
:mod:`engine.booking._time_off`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import delete, get, post
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from engine.booking import AppointmentView, RescheduleBody, TimeOffBody, TimeOffList, TimeOffView
from gateway.problems import problems
from gateway.telemetry import event

if TYPE_CHECKING:
    from engine.principal import Principal
    from engine.runtime import Engine


@post(
    "/v1/appointments/{appointment_id:str}/reschedule",
    tags=["appointments"],
    summary="Move to another slot of the same doctor (its patient)",
    status_code=HTTP_200_OK,
    responses=problems(401, 403, 404, 409, 413, 422, 503),
)
async def reschedule(
    engine: Engine, principal: Principal, appointment_id: str, data: RescheduleBody
) -> AppointmentView:
    """`{slot_id}`: another open slot of the same doctor, starting in the future (another
    doctor's slot or one that started: 422; taken: 409 `slot_unavailable`; overlapping
    another of the patient's appointments: 409 `patient_overlap`). A `requested` appointment
    moves at once (new `slot`, new `decision_deadline`, the old slot open again; event
    `appointment.rescheduled` to both). A `confirmed` one keeps its slot and meeting and gets
    `pending_move: {slot, decision_deadline}`, the new slot taken meanwhile (event
    `appointment.move_requested` to the doctor); the doctor's accept applies it, refuse drops
    it, and undecided at its deadline it lapses (`appointment.move_lapsed`). A second pending
    move, or any other status: 409 `invalid_transition`. The new slot is taken before the old
    one is let go: the patient never holds neither, no slot ever holds two."""
    view = await engine.booking.reschedule(principal, appointment_id, data.slot_id)
    event("appointment.reschedule", appointment_id=appointment_id)
    return view


@post(
    "/v1/me/time-off",
    tags=["availability"],
    summary="Take time off",
    status_code=HTTP_201_CREATED,
    responses=problems(401, 403, 409, 413, 422, 503),
)
async def create_time_off(engine: Engine, doctor: Principal, data: TimeOffBody) -> TimeOffView:
    """`{from, to, reason?, cancel_confirmed?, justification?}` (instants, `to` after `from`,
    at most 90 days apart: 422 otherwise). Every slot inside is deleted (`removed_slots`),
    requested appointments inside are refused (`refused_requests`) and pending moves into it
    dropped. Confirmed appointments inside: 409 `confirmed_in_range` listing their ids under
    `appointments`, nothing changed, unless `cancel_confirmed: true` with a `justification`
    (10-1000 characters): then they are cancelled by the doctor, the patients told
    (`cancelled_appointments`). Later slot creations, explicit or by rule, skip the range."""
    return await engine.booking.create_time_off(doctor, data)


@get(
    "/v1/me/time-off",
    tags=["availability"],
    summary="Own time off",
    responses=problems(401, 403),
)
async def list_time_off(engine: Engine, doctor: Principal) -> TimeOffList:
    """Every time-off range of the doctor, by start."""
    return TimeOffList(items=await engine.booking.list_time_off(doctor))


@delete(
    "/v1/me/time-off/{time_off_id:str}",
    tags=["availability"],
    summary="Remove time off",
    status_code=HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 503),
)
async def delete_time_off(engine: Engine, doctor: Principal, time_off_id: str) -> None:
    """204; slot creations reach the range again. The slots it removed are not recreated.
    Another doctor's (or an unknown) id: 404."""
    await engine.booking.delete_time_off(doctor, time_off_id)


route_handlers = [reschedule, create_time_off, list_time_off, delete_time_off]
