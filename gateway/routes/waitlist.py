"""Waitlist (docs/API.md "Waitlist"): patients waiting for a doctor, held slots, the doctor's list.
Handlers only translate; :class:`engine.waitlist.WaitlistService` decides."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import delete, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

# Runtime imports: Litestar reads handler annotations when it registers the routes.
from engine.waitlist import CreateEntry, DoctorEntryPage, EntryList, EntryView  # noqa: TC001
from gateway.problems import problems
from gateway.routes._paging import NextCursor  # noqa: TC001  (Litestar resolves at runtime)

if TYPE_CHECKING:
    from engine.principal import Principal
    from engine.runtime import Engine

_HOLDS = """Whenever a slot of the doctor becomes free (a cancellation, a refusal, an expiry, a
lapsed hold, a new or edited slot) inside an active entry's window, it is held for the entry
created earliest among those whose window covers it, for `HEALTHMED_WAITLIST_HOLD_SECONDS`
(default 600, never past 15 minutes before the start): the agenda shows it `taken`, anyone
else booking it gets 409 `slot_unavailable`. The holder is told by the websocket event
`waitlist.offered` `{entry_id, slot: {id, start, end}, hold_expires_at}` on
`patient.<id>.appointments` and by e-mail, and books it with `POST /v1/appointments`."""


@post(
    "/v1/waitlist",
    tags=["waitlist"],
    summary="Wait for a doctor's freed slots",
    status_code=HTTP_201_CREATED,
    description="`{doctor_id, from, to}`: a window (instants; `from` in the future, at most "
    "62 days long, `to` after `from`: 422 otherwise). → 201 with `position` and `offer: null`. "
    "At most 10 active entries per patient (409 `waitlist_limit`); an entry overlapping "
    "another of yours at the same doctor: 409 `already_waiting`; unknown doctor: 404; "
    "doctors: 403.\n\n" + _HOLDS,
    responses=problems(401, 403, 404, 409, 413, 422, 503),
)
async def create_entry(engine: Engine, patient: Principal, data: CreateEntry) -> EntryView:
    return await engine.waitlist.create(patient, data)


@get(
    "/v1/waitlist",
    tags=["waitlist"],
    summary="Own active entries",
    responses=problems(401, 403, 503),
)
async def own_entries(engine: Engine, patient: Principal) -> EntryList:
    """Each with `position` (1 = next to be offered among that doctor's entries) and `offer`
    (`{slot: {id, start, end}, hold_expires_at}` or null)."""
    return await engine.waitlist.list_own(patient)


@delete(
    "/v1/waitlist/{entry_id:str}",
    tags=["waitlist"],
    summary="Leave a waitlist",
    status_code=HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409, 503),
)
async def delete_entry(engine: Engine, patient: Principal, entry_id: str) -> None:
    """A slot held for this entry passes on at once (to the next entry, or opens). Another
    patient's entry: 404."""
    await engine.waitlist.delete(patient, entry_id)


@post(
    "/v1/waitlist/{entry_id:str}/decline",
    tags=["waitlist"],
    summary="Decline the held slot",
    status_code=HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409, 503),
)
async def decline_offer(engine: Engine, patient: Principal, entry_id: str) -> None:
    """The held slot passes on at once; the entry keeps its place and is never offered that
    slot again. Nothing held for it: 409 `no_offer`."""
    await engine.waitlist.decline(patient, entry_id)


@get(
    "/v1/me/waitlist",
    tags=["waitlist"],
    summary="The doctor's own waitlist",
    responses=problems(401, 403, 422),
)
async def doctor_waitlist(
    engine: Engine,
    doctor: Principal,
    limit: int = Parameter(default=20, description="page size, 1-100"),
    cursor: NextCursor = None,
) -> DoctorEntryPage:
    """`{items: [{id, patient_id, from, to, created_at, position, offer}], next_cursor}` in
    first come, first served order."""
    return await engine.waitlist.list_doctor(doctor, limit=limit, cursor=cursor)


route_handlers = [create_entry, own_entries, delete_entry, decline_offer, doctor_waitlist]
