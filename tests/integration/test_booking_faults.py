"""Booking under faults and its write-through rules, on a real redis-server and SQLite:
Redis flushed between requests, the store failing mid-decision, idempotent requests, expiry,
cancellation, ratings and rehydration."""

from __future__ import annotations

import asyncio
import json

import jwt
import pytest
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import keys
from engine.booking import BookingService
from engine.booking._store import APPT_SK, appt_pk, doctor_pk
from engine.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from engine.timeutil import to_rfc3339
from tests.integration.conftest import (
    Clock,
    FlakyStore,
    book,
    doctor,
    list_doctor,
    patient,
    slots_of,
)

HOUR = 3_600_000
MIN = 60_000


async def snapshot(redis: Redis, doctor_id: str, slot_id: str) -> tuple:
    return (
        await redis.hgetall(keys.slot(doctor_id, slot_id)),
        await redis.zrange(keys.doctor_deadlines(doctor_id), 0, -1, withscores=True),
        await redis.zrange(keys.doctor_open_slots(doctor_id), 0, -1, withscores=True),
    )


async def test_flushed_redis_is_rehydrated_and_nothing_is_bookable_twice(
    booking: BookingService, booking_redis: Redis, clock: Clock
) -> None:
    """After FLUSHDB between requests: confirmed and requested appointments survive, their
    slots stay unbookable, the patient's overlap rule still holds, open slots stay open."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    confirmed_slot, requested_slot, open_slot = await slots_of(
        booking,
        doc,
        [
            (start, start + HOUR),
            (start + HOUR, start + 2 * HOUR),
            (start + 2 * HOUR, start + 3 * HOUR),
        ],
    )
    a = await book(booking, pat, confirmed_slot)
    await booking.accept(doc, a["id"])
    b = await book(booking, patient(), requested_slot)
    await booking_redis.flushdb()

    agenda = await booking.agenda(doc.user_id, None, None)
    assert [s.status for s in agenda.slots] == ["taken", "taken", "open"]
    for slot in (confirmed_slot, requested_slot):
        with pytest.raises(Conflict) as info:
            await book(booking, patient(), slot)
        assert info.value.code == "slot_unavailable"
    other = await slots_of(booking, doctor(), [(start + 10 * MIN, start + 40 * MIN)])
    with pytest.raises(Conflict) as info:
        await book(booking, pat, other[0])
    assert info.value.code == "patient_overlap"
    assert (await booking.get_appointment(doc, a["id"])).status == "confirmed"
    # the requested one can still be decided, and still expires
    await booking.refuse(doc, b["id"])
    await book(booking, patient(), open_slot)


async def test_store_unavailable_during_accept_leaves_redis_unchanged(
    booking: BookingService, booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """Accept while the store fails: 503, the request is exactly as it was in Redis and the
    store; a later accept succeeds."""
    doc = doctor()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    appt = await book(booking, patient(), slot)
    before = await snapshot(booking_redis, doc.user_id, slot)
    booking_store.failing = True
    with pytest.raises(Unavailable):
        await booking.accept(doc, appt["id"])
    booking_store.failing = False
    assert await snapshot(booking_redis, doc.user_id, slot) == before
    assert (await booking.get_appointment(doc, appt["id"])).status == "requested"
    view = await booking.accept(doc, appt["id"])
    assert view.status == "confirmed"
    assert await booking_redis.hget(keys.slot(doc.user_id, slot), "status") == b"booked"


async def test_store_unavailable_during_request_releases_the_slot(
    booking: BookingService, booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """If the request cannot be stored: 503, the slot is open again and the patient holds
    nothing; the same patient can book it once the store is back."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    booking_store.failing = True
    with pytest.raises(Unavailable):
        await book(booking, pat, slot)
    booking_store.failing = False
    assert await booking_redis.hget(keys.slot(doc.user_id, slot), "status") == b"open"
    assert await booking_redis.zscore(keys.doctor_open_slots(doc.user_id), slot) == start
    assert await booking_redis.hkeys(keys.patient_holds(pat.user_id)) == [b"~h"]
    await book(booking, pat, slot)


async def test_store_unavailable_during_slot_edit_and_delete_changes_nothing(
    booking: BookingService, booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """Edit and delete with the store failing: 503, the slot is open and unchanged."""
    doc = doctor()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    before = await snapshot(booking_redis, doc.user_id, slot)
    booking_store.failing = True
    with pytest.raises(Unavailable):
        await booking.update_slot(
            doc, slot, to_rfc3339(start + 2 * HOUR), to_rfc3339(start + 3 * HOUR)
        )
    with pytest.raises(Unavailable):
        await booking.delete_slot(doc, slot)
    booking_store.failing = False
    assert await snapshot(booking_redis, doc.user_id, slot) == before
    assert await booking_redis.zrange(keys.doctor_slots(doc.user_id), 0, -1) == [slot.encode()]


async def test_concurrent_duplicates_with_one_idempotency_key_get_one_appointment(
    booking: BookingService, booking_store: FlakyStore, clock: Clock
) -> None:
    """Ten concurrent requests with the same Idempotency-Key: all get the same body, one
    appointment exists; the key used for another slot is refused (422, as the IETF
    Idempotency-Key draft asks), and nothing more is booked."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    slot, other = await slots_of(
        booking, doc, [(start, start + HOUR), (start + HOUR, start + 2 * HOUR)]
    )
    bodies = await asyncio.gather(
        *(booking.request_appointment(pat, slot, "key-1") for _ in range(10))
    )
    assert len(set(bodies)) == 1
    assert len(await booking_store.inner.query(f"USER#{pat.user_id}", prefix="APPT#")) == 1
    with pytest.raises(Invalid) as info:
        await booking.request_appointment(pat, other, "key-1")
    assert info.value.code == "idempotency_key_reused"
    assert len(await booking_store.inner.query(f"USER#{pat.user_id}", prefix="APPT#")) == 1
    with pytest.raises(Conflict):
        await booking.request_appointment(patient(), slot, "key-2")


async def test_idempotent_error_outcome_is_replayed(booking: BookingService, clock: Clock) -> None:
    """A key whose first outcome was 409 replays the 409 even after the slot reopens."""
    doc, first, second = doctor(), patient(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    appt = await book(booking, first, slot)
    with pytest.raises(Conflict):
        await book(booking, second, slot, "k")
    await booking.refuse(doc, appt["id"])
    with pytest.raises(Conflict) as info:
        await book(booking, second, slot, "k")
    assert info.value.code == "slot_unavailable"


async def test_expired_request_reopens_the_slot_and_cannot_be_accepted(
    booking: BookingService, booking_redis: Redis, clock: Clock
) -> None:
    """Past its deadline a request cannot be accepted (409); the sweeper expires it and the
    slot is open again."""
    doc = doctor()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    appt = await book(booking, patient(), slot)
    assert appt["decision_deadline"] == to_rfc3339(clock.now + booking.ctx.ttl_ms)
    clock.advance(booking.ctx.ttl_ms)
    with pytest.raises(Conflict) as info:
        await booking.accept(doc, appt["id"])
    assert info.value.code == "invalid_transition"
    assert await booking.expire_due() == 1
    assert (await booking.get_appointment(doc, appt["id"])).status == "expired"
    assert await booking_redis.zscore(keys.doctor_open_slots(doc.user_id), slot) == start


async def test_a_request_missing_from_the_sweep_index_is_found_by_the_reindex(
    booking: BookingService, booking_store: FlakyStore, booking_redis: Redis, clock: Clock
) -> None:
    """A process killed between the reservation script and its sweep-index ZADD leaves a
    request the index does not know: the periodic re-index finds it and it expires."""
    doc = doctor()
    await list_doctor(booking_store.inner, doc)
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    appt = await book(booking, patient(), slot)
    await booking_redis.zrem(keys.sweep_index(), doc.user_id)  # the lost ZADD
    clock.advance(booking.ctx.ttl_ms + 1)
    assert await booking.expire_due() == 0  # nothing tells the sweeper about it
    assert await booking.reindex_deadlines() == 1
    assert await booking.expire_due() == 1
    assert (await booking.get_appointment(doc, appt["id"])).status == "expired"
    assert await booking.reindex_deadlines() == 0  # nothing undecided is left


async def test_deadline_is_fifteen_minutes_before_a_close_start(
    booking: BookingService, clock: Clock
) -> None:
    """A slot starting in 1 h: the deadline is 15 min before it; within 15 min of the start
    requests are refused with slot_unavailable, and the public agenda says it is taken."""
    doc = doctor()
    too_soon, soon = await slots_of(
        booking,
        doc,
        [(clock.now + 10 * MIN, clock.now + 20 * MIN), (clock.now + HOUR, clock.now + 2 * HOUR)],
    )
    agenda = await booking.agenda(doc.user_id, None, None)
    assert [(s.id, s.status) for s in agenda.slots] == [(too_soon, "taken"), (soon, "open")]
    appt = await book(booking, patient(), soon)
    assert appt["decision_deadline"] == to_rfc3339(clock.now + HOUR - 15 * MIN)
    with pytest.raises(Conflict) as info:
        await book(booking, patient(), too_soon)
    assert info.value.code == "slot_unavailable"


async def test_wrong_transitions_and_roles(booking: BookingService, clock: Clock) -> None:
    """409 for a decision on a decided appointment; 403 for the wrong role; 404 for another
    user's appointment; 422 for a missing or short justification."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    appt = (await book(booking, pat, slot))["id"]
    with pytest.raises(Forbidden):
        await booking.accept(pat, appt)
    with pytest.raises(Forbidden):
        await booking.request_appointment(doc, slot)
    with pytest.raises(NotFound):
        await booking.accept(doctor(), appt)
    with pytest.raises(NotFound):
        await booking.get_appointment(patient(), appt)
    for text in (None, "", "too short"):
        with pytest.raises(Invalid):
            await booking.cancel(pat, appt, text)
    await booking.refuse(doc, appt, "not available")
    for action in (booking.accept, booking.refuse):
        with pytest.raises(Conflict) as info:
            await action(doc, appt)
        assert info.value.code == "invalid_transition"
    with pytest.raises(Conflict):
        await booking.cancel(pat, appt, "a long enough reason")


async def test_slot_edit_and_delete_only_when_open(booking: BookingService, clock: Clock) -> None:
    """PATCH/DELETE of a requested slot: 409 slot_not_open; an edit into another slot: 409
    slot_overlap; an open slot moves and can be deleted."""
    doc = doctor()
    start = clock.now + 5 * HOUR
    a, b = await slots_of(booking, doc, [(start, start + HOUR), (start + HOUR, start + 2 * HOUR)])
    await book(booking, patient(), a)
    with pytest.raises(Conflict) as info:
        await booking.delete_slot(doc, a)
    assert info.value.code == "slot_not_open"
    with pytest.raises(Conflict) as info:
        await booking.update_slot(
            doc, a, to_rfc3339(start + 5 * HOUR), to_rfc3339(start + 6 * HOUR)
        )
    assert info.value.code == "slot_not_open"
    with pytest.raises(Conflict) as info:
        await booking.update_slot(
            doc, b, to_rfc3339(start + 30 * MIN), to_rfc3339(start + 90 * MIN)
        )
    assert info.value.code == "slot_overlap"
    moved = await booking.update_slot(
        doc, b, to_rfc3339(start + HOUR + 30 * MIN), to_rfc3339(start + 2 * HOUR + 30 * MIN)
    )
    assert moved.start == to_rfc3339(start + HOUR + 30 * MIN)
    await booking.delete_slot(doc, b)
    with pytest.raises(NotFound):
        await booking.delete_slot(doc, b)


async def test_cancel_confirmed_reopens_and_notifies_both(
    booking: BookingService, booking_redis: Redis, clock: Clock
) -> None:
    """A patient cancels a confirmed appointment: the slot reopens and both topics get
    appointment.cancelled."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    appt = (await book(booking, pat, slot))["id"]
    await booking.accept(doc, appt)
    pubsub = booking_redis.pubsub()
    await pubsub.psubscribe("hm:t:*")
    await pubsub.get_message(timeout=1)
    view = await booking.cancel(pat, appt, "I have to travel, sorry")
    assert view.cancellation is not None
    assert view.cancellation.by == "patient"
    seen = set()
    for _ in range(10):
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if msg is None:
            break
        frame = json.loads(msg["data"])
        seen.add((frame["topic"], frame["event"], frame["data"].get("status")))
    await pubsub.aclose()
    assert (f"doctor.{doc.user_id}.appointments", "appointment.cancelled", "cancelled") in seen
    assert (f"patient.{pat.user_id}.appointments", "appointment.cancelled", "cancelled") in seen
    assert (f"doctor.{doc.user_id}.slots", "slot.updated", "open") in seen
    await book(booking, patient(), slot)


async def test_rating_once_after_the_end(
    booking: BookingService, booking_store: FlakyStore, clock: Clock
) -> None:
    """Rating: 409 rating_too_early before the end, 422 outside 1-5, 201 after, 409 twice."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    appt = (await book(booking, pat, slot))["id"]
    await booking.accept(doc, appt)
    with pytest.raises(Conflict) as info:
        await booking.rate(pat, appt, 5, None)
    assert info.value.code == "rating_too_early"
    clock.advance(6 * HOUR)
    with pytest.raises(Invalid):
        await booking.rate(pat, appt, 6, None)
    await booking.rate(pat, appt, 4, "great")
    with pytest.raises(Conflict) as info:
        await booking.rate(pat, appt, 4, None)
    assert info.value.code == "already_rated"
    ratings = await booking_store.inner.get(f"USER#{doc.user_id}", "RATINGS")
    assert ratings is not None
    assert ratings.data == {"sum": 4, "count": 1}


async def test_meeting_links_are_per_participant_and_signed(
    booking: BookingService, clock: Clock
) -> None:
    """The meeting: 409 before confirmation; afterwards each participant gets a link with
    their own HS256 token valid from 10 minutes before the start to start + 50 min."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    appt = (await book(booking, pat, slot))["id"]
    with pytest.raises(Conflict):
        await booking.meeting(pat, appt)
    await booking.accept(doc, appt)
    links = [await booking.meeting(p, appt) for p in (doc, pat)]
    assert links[0].ends_at == to_rfc3339(start + 50 * MIN)
    rooms = set()
    for link, who in zip(links, (doc, pat), strict=True):
        token = link.url.split("?jwt=")[1]
        claims = jwt.decode(
            token, "m" * 48, algorithms=["HS256"], audience="jitsi",
            options={"verify_nbf": False, "verify_exp": False},
        )  # fmt: skip
        assert claims["context"]["user"]["id"] == who.user_id
        assert claims["nbf"] == (start - 10 * MIN) // 1000
        assert claims["exp"] == (start + 50 * MIN) // 1000
        rooms.add(claims["room"])
        assert link.url.startswith(f"https://meet.example.test/{claims['room']}?jwt=")
    assert len(rooms) == 1
    with pytest.raises(NotFound):
        await booking.meeting(patient(), appt)


async def test_full_rehydrate_rebuilds_every_doctor(
    booking: BookingService, booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """rebuild() rebuilds slots, open sets and pending deadlines of every listed doctor."""
    doc = doctor()
    await list_doctor(booking_store.inner, doc)
    start = clock.now + 5 * HOUR
    a, b = await slots_of(booking, doc, [(start, start + HOUR), (start + HOUR, start + 2 * HOUR)])
    appt = (await book(booking, patient(), a))["id"]
    await booking_redis.flushdb()
    assert await booking.rebuild() == 2
    assert await booking_redis.zrange(keys.doctor_open_slots(doc.user_id), 0, -1) == [b.encode()]
    assert await booking_redis.zrange(keys.doctor_deadlines(doc.user_id), 0, -1) == [appt.encode()]
    assert await booking_redis.zscore(keys.sweep_index(), doc.user_id) is not None
    clock.advance(booking.ctx.ttl_ms + 1)
    assert await booking.expire_due() == 1


async def test_ghost_reservation_is_released_by_the_sweeper(
    booking: BookingService,
    booking_redis: Redis,
    booking_store: FlakyStore,
    clock: Clock,
) -> None:
    """A reservation made in Redis but never stored (the call hangs before the store write,
    as a process dying there would) is released at its deadline: the request put the doctor in
    the sweep index before the store write."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    reached, never = asyncio.Event(), asyncio.Event()

    async def hang(doctor_id: str) -> None:
        reached.set()
        await never.wait()

    booking.ctx.accounts.get_doctor = hang  # type: ignore[method-assign]
    task = asyncio.create_task(book(booking, pat, slot))
    await asyncio.wait_for(reached.wait(), 5)
    ghost = await booking_redis.hget(keys.slot(doc.user_id, slot), "appointment_id")
    assert await booking_redis.hget(keys.slot(doc.user_id, slot), "status") == b"requested"
    assert await booking_store.inner.get(appt_pk(ghost.decode()), APPT_SK) is None
    assert await booking_store.inner.query(doctor_pk(doc.user_id), prefix="HOLD#") == []
    clock.advance(booking.ctx.ttl_ms + 1)
    assert await booking.expire_due() == 0
    assert await booking_redis.hget(keys.slot(doc.user_id, slot), "status") == b"open"
    assert await booking_redis.zscore(keys.sweep_index(), doc.user_id) is None
    # slot and the patient's hold are free again: the same patient books the same slot
    booking.ctx.accounts = type(booking.ctx.accounts)(booking_store)  # type: ignore[call-arg]
    assert (await book(booking, pat, slot))["status"] == "requested"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_reservation_whose_store_write_and_release_failed_frees_its_slot_at_once(
    booking: BookingService,
    booking_redis: Redis,
    booking_store: FlakyStore,
    clock: Clock,
) -> None:
    """The store write fails and so does the release (Redis failing over): the slot does not
    wait for the reservation's deadline. The doctor is rebuilt from the store without the
    unstored reservation, so the agenda shows the slot open and another patient books it."""
    doc, pat, other = doctor(), patient(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    booking_store.failing_only = {"transact"}
    real_reopen = booking.ctx.reopen

    async def broken_reopen(*args: object) -> str:
        raise Unavailable("redis failed", code="redis_unavailable")

    booking.ctx.reopen = broken_reopen  # type: ignore[method-assign,assignment]
    with pytest.raises(Unavailable):
        await book(booking, pat, slot)
    booking.ctx.reopen = real_reopen  # type: ignore[method-assign]
    booking_store.failing_only = set()
    assert await booking_store.inner.query(doctor_pk(doc.user_id), prefix="HOLD#") == []
    agenda = await booking.agenda(doc.user_id, None, None)
    assert [(s.id, s.status) for s in agenda.slots] == [(slot, "open")]
    assert (await book(booking, other, slot))["status"] == "requested"


def _time_out_after_landing(booking: BookingService, times: int) -> None:
    """The next ``times`` reserve.lua calls run in Redis, then report a timeout."""
    real = booking.ctx.run_script
    left = [times]

    async def landing_then_timeout(script: object, keys_: list[str], args: list[object]) -> object:
        result = await real(script, keys_, args)  # type: ignore[arg-type]
        if script is booking.ctx.scripts.reserve.registered and left[0] > 0:
            left[0] -= 1
            raise RedisTimeoutError("injected timeout after the script ran")
        return result

    booking.ctx.run_script = landing_then_timeout  # type: ignore[assignment]


async def test_timed_out_reservation_is_undone_on_patient_overlap(
    booking: BookingService, booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """reserve.lua lands but times out; the internal retry answers ``already``. The call still
    made the reservation (it minted the appointment id), so the patient_overlap that follows
    releases the slot at once."""
    d1, d2, pat = doctor(), doctor(), patient()
    start = clock.now + 5 * HOUR
    (s1,) = await slots_of(booking, d1, [(start, start + HOUR)])
    (s2,) = await slots_of(booking, d2, [(start, start + HOUR)])
    await book(booking, pat, s1)
    _time_out_after_landing(booking, 1)
    with pytest.raises(Conflict) as info:
        await book(booking, pat, s2)
    assert info.value.code == "patient_overlap"
    assert await booking_redis.hget(keys.slot(d2.user_id, s2), "status") == b"open"
    assert await booking_redis.zrange(keys.doctor_deadlines(d2.user_id), 0, -1) == []
    assert (await book(booking, patient(), s2))["status"] == "requested"


async def test_unanswered_reservation_frees_its_slot_at_once_and_stays_indexed(
    booking: BookingService, booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """reserve.lua lands but both attempts time out (503): the unstored reservation does not
    keep the slot (the doctor is rebuilt from the store without it, so the agenda shows it
    open and the patient books it again at once), and the doctor is in the sweep index by the
    deadline the reservation can have at the latest, in case Redis could not be told."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    _time_out_after_landing(booking, 2)
    with pytest.raises(Unavailable):
        await book(booking, pat, slot)
    latest = await booking_redis.zscore(keys.sweep_index(), doc.user_id)
    assert latest is not None
    assert latest <= clock.now + booking.ctx.ttl_ms
    agenda = await booking.agenda(doc.user_id, None, None)
    assert [(s.id, s.status) for s in agenda.slots] == [(slot, "open")]
    assert (await book(booking, pat, slot))["status"] == "requested"


async def test_listing_paginates_and_filters(booking: BookingService, clock: Clock) -> None:
    """Own appointments: status filter, from/to on the start, pages with next_cursor."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    slots = await slots_of(
        booking, doc, [(start + i * HOUR, start + i * HOUR + 50 * MIN) for i in range(5)]
    )
    ids = [(await book(booking, pat, s))["id"] for s in slots]
    await booking.accept(doc, ids[0])
    page = await booking.list_appointments(pat, limit=2)
    assert [a.id for a in page.items] == ids[:2]
    page2 = await booking.list_appointments(pat, limit=2, cursor=page.next_cursor)
    assert [a.id for a in page2.items] == ids[2:4]
    confirmed = await booking.list_appointments(doc, status="confirmed")
    assert [a.id for a in confirmed.items] == ids[:1]
    assert confirmed.items[0].meeting is not None
    ranged = await booking.list_appointments(
        pat, start=to_rfc3339(start + HOUR), end=to_rfc3339(start + 3 * HOUR)
    )
    assert [a.id for a in ranged.items] == ids[1:3]
    with pytest.raises(Invalid):
        await booking.list_appointments(pat, limit=101)


async def test_erasure_cancels_future_appointments_and_exports_them(
    booking: BookingService, clock: Clock
) -> None:
    """export_user lists the user's appointments; erase_user cancels the active ones."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    a, b = await slots_of(booking, doc, [(start, start + HOUR), (start + HOUR, start + 2 * HOUR)])
    x = (await book(booking, pat, a))["id"]
    await booking.accept(doc, x)
    y = (await book(booking, pat, b))["id"]
    exported = await booking.export_user(pat)
    assert {e["id"] for e in exported["appointments"]} == {x, y}
    await booking.erase_user(pat)
    for appt in (x, y):
        view = await booking.get_appointment(doc, appt)
        assert view.status == "cancelled"
        assert view.cancellation is not None
        assert view.cancellation.by == "patient"
    agenda = await booking.agenda(doc.user_id, None, None)
    assert [s.status for s in agenda.slots] == ["open", "open"]


async def test_a_reservation_being_stored_is_not_released_as_a_ghost(
    booking: BookingService,
    booking_redis: Redis,
    booking_store: FlakyStore,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slot starting just after the 15-minute cutoff has a deadline a second away: a sweep
    while the request's store write is still running leaves it alone, and the request then
    expires normally at a later sweep."""
    doc, pat = doctor(), patient()
    start = clock.now + 15 * MIN + 1000
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    gate, entered = asyncio.Event(), asyncio.Event()
    real_transact = booking_store.transact

    async def paused(ops: list[object]) -> None:
        if not entered.is_set():
            entered.set()
            await gate.wait()
        await real_transact(ops)  # type: ignore[arg-type]

    monkeypatch.setattr(booking_store, "transact", paused)
    task = asyncio.create_task(book(booking, pat, slot))
    await asyncio.wait_for(entered.wait(), 5)
    clock.advance(2000)
    assert await booking.expire_due() == 0
    assert await booking_redis.hget(keys.slot(doc.user_id, slot), "status") == b"requested"
    gate.set()
    body = await task
    assert body["status"] == "requested"
    clock.advance(HOUR)
    assert await booking.expire_due() == 1
    item = await booking_store.inner.get(appt_pk(body["id"]), APPT_SK)
    assert item is not None
    assert item.data["status"] == "expired"
