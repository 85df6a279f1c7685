"""Moves (rescheduling) under faults, on a real redis-server and SQLite: the store failing
during each step of a move changes nothing (503), a failing Redis after the store committed
still leaves one booking, a flushed Redis with a pending move is rebuilt from the store (the
move still pending, then lapsing cleanly at its deadline), and move.lua's contract."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from engine import keys
from engine.booking import BookingService
from engine.booking._model import move_holder
from engine.errors import Conflict, Unavailable
from engine.principal import Principal
from tests.integration.conftest import (
    Clock,
    FlakyStore,
    book,
    doctor,
    patient,
    slots_of,
)

HOUR = 3_600_000
MIN = 60_000


async def own(booking: BookingService, doc: Principal) -> dict[str, tuple[str, str | None]]:
    """The doctor's slots as the agenda (Redis) shows them: id -> (status, appointment)."""
    return {
        s.id: (s.status, s.appointment_id) for s in await booking.list_own_slots(doc, None, None)
    }


async def state(booking: BookingService, booking_redis: Redis, doc_id: str) -> tuple:
    """Everything a move touches: the doctor's Redis keys and the store's holds and slots."""
    ctx = booking.ctx
    slots = await ctx.store.query(f"DOC#{doc_id}", prefix="SLOT#")
    holds = await ctx.store.query(f"DOC#{doc_id}", prefix="HOLD#")
    return (
        await booking_redis.zrange(keys.doctor_deadlines(doc_id), 0, -1, withscores=True),
        await booking_redis.zrange(keys.doctor_open_slots(doc_id), 0, -1),
        await booking_redis.hgetall(keys.doctor_pending(doc_id)),
        sorted((i.sk, i.data.get("status"), i.data.get("appointment_id")) for i in slots),
        sorted((i.sk, i.data.get("appointment_id")) for i in holds),
    )


@pytest.mark.parametrize("confirmed", [False, True], ids=["requested", "confirmed"])
async def test_the_store_failing_during_a_move_changes_nothing(
    booking: BookingService,
    booking_redis: Redis,
    booking_store: FlakyStore,
    clock: Clock,
    confirmed: bool,
) -> None:
    """With the store failing, a reschedule is 503 and Redis, the store and the appointment
    are exactly as before; the new slot is bookable by someone else at once. With a pending
    move, the doctor's accept and refuse failing the same way change nothing either."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    a, b = await slots_of(
        booking, doc, [(start, start + HOUR), (start + 2 * HOUR, start + 3 * HOUR)]
    )
    appt = await book(booking, pat, a)
    if confirmed:
        await booking.accept(doc, appt["id"])
    before = await state(booking, booking_redis, doc.user_id)
    view_before = await booking.get_appointment(pat, appt["id"])
    booking_store.failing_only = {"transact"}
    with pytest.raises(Unavailable):
        await booking.reschedule(pat, appt["id"], b)
    booking_store.failing_only = set()
    assert await state(booking, booking_redis, doc.user_id) == before
    assert await booking.get_appointment(pat, appt["id"]) == view_before
    holds = await booking_redis.hgetall(keys.patient_holds(pat.user_id))
    assert move_holder(appt["id"]).encode() not in holds
    if not confirmed:
        return
    await booking.reschedule(pat, appt["id"], b)
    pending = await state(booking, booking_redis, doc.user_id)
    for decide in (booking.accept, booking.refuse):
        booking_store.failing_only = {"transact"}
        with pytest.raises(Unavailable):
            await decide(doc, appt["id"])
        booking_store.failing_only = set()
        assert await state(booking, booking_redis, doc.user_id) == pending
    view = await booking.get_appointment(pat, appt["id"])
    assert view.pending_move is not None
    assert view.slot.id == a


async def test_redis_failing_after_the_store_committed_a_move_keeps_one_booking(
    booking: BookingService, booking_redis: Redis, clock: Clock
) -> None:
    """move.lua failing after the store recorded the move: the call still succeeds (the store
    is the truth), the doctor is rebuilt from the store, and the agenda shows the new slot
    taken by the appointment and the old one open, never both taken nor both open."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    a, b = await slots_of(
        booking, doc, [(start, start + HOUR), (start + 2 * HOUR, start + 3 * HOUR)]
    )
    appt = await book(booking, pat, a)

    async def redis_fails(*_: object) -> None:
        raise Unavailable("injected: move.lua did not run", code="redis_unavailable")

    booking.moves._move = redis_fails  # type: ignore[method-assign]
    moved = await booking.reschedule(pat, appt["id"], b)
    assert moved.slot.id == b
    slots = await own(booking, doc)
    assert slots == {a: ("open", None), b: ("requested", appt["id"])}
    other = await book(booking, patient(), a)
    assert other["slot"]["id"] == a


async def test_a_flushed_redis_keeps_a_pending_move_which_then_lapses(
    booking: BookingService, booking_redis: Redis, clock: Clock
) -> None:
    """FLUSHDB with a pending move: the rebuilt agenda has both slots taken and the new one
    held for the move; the patient cannot book another overlapping the new slot meanwhile;
    at the move's deadline the sweep lapses it: the appointment stays confirmed at the old
    slot and the new one opens."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    a, b = await slots_of(
        booking, doc, [(start, start + HOUR), (start + 2 * HOUR, start + 3 * HOUR)]
    )
    appt = await book(booking, pat, a)
    await booking.accept(doc, appt["id"])
    pending = await booking.reschedule(pat, appt["id"], b)
    assert pending.pending_move is not None
    await booking_redis.flushdb()
    slots = await own(booking, doc)
    assert slots == {a: ("booked", appt["id"]), b: ("requested", appt["id"])}
    with pytest.raises(Conflict) as taken:
        await book(booking, patient(), b)
    assert taken.value.code == "slot_unavailable"
    other_doc = doctor()
    (c,) = await slots_of(booking, other_doc, [(start + 2 * HOUR, start + 3 * HOUR)])
    with pytest.raises(Conflict) as overlap:
        await book(booking, pat, c)  # the pending move's interval is the patient's too
    assert overlap.value.code == "patient_overlap"
    await booking_redis.flushdb()
    assert await own(booking, doc) == slots  # rebuilt again, the move's deadline with it
    clock.advance(2 * HOUR + MIN)
    assert await booking.expire_due() == 1
    view = await booking.get_appointment(pat, appt["id"])
    assert (view.status, view.slot.id, view.pending_move) == ("confirmed", a, None)
    slots = await own(booking, doc)
    assert slots == {a: ("booked", appt["id"]), b: ("open", None)}
    assert await booking.expire_due() == 0


async def test_move_script_contract(
    booking: BookingService, booking_redis: Redis, clock: Clock
) -> None:
    """move.lua: mismatch when the holder does not hold the new slot; "moved" passes the new
    slot to the appointment (booked) and reopens the old one; a retry says "already" and
    changes nothing; an empty old slot id keeps the old slot."""
    doc, pat = doctor(), patient()
    d = doc.user_id
    start = clock.now + 5 * HOUR
    a, b = await slots_of(
        booking, doc, [(start, start + HOUR), (start + 2 * HOUR, start + 3 * HOUR)]
    )
    appt = await book(booking, pat, a)
    await booking.accept(doc, appt["id"])
    ctx = booking.ctx
    move_keys = [
        keys.slot(d, b), keys.slot(d, a), keys.doctor_open_slots(d),
        keys.doctor_deadlines(d), keys.doctor_pending(d), keys.doctor_hydrated(d),
    ]  # fmt: skip
    holder = move_holder(appt["id"])
    args = [appt["id"], holder, b, a, clock.now, "booked", 0, "ch", "frame"]
    assert await ctx.eval_raw(ctx.scripts.move, move_keys, args) == [0, "mismatch"]
    await booking.reschedule(pat, appt["id"], b)
    assert await ctx.eval_raw(ctx.scripts.move, move_keys, args) == [1, "moved", "reopened"]
    assert await booking_redis.hget(keys.slot(d, b), "status") == b"booked"
    assert await booking_redis.hget(keys.slot(d, b), "appointment_id") == appt["id"].encode()
    assert await booking_redis.hget(keys.slot(d, a), "status") == b"open"
    assert await booking_redis.zscore(keys.doctor_open_slots(d), a) == start
    assert await booking_redis.zscore(keys.doctor_deadlines(d), holder) is None
    assert await ctx.eval_raw(ctx.scripts.move, move_keys, args) == [1, "already", "kept"]
    kept = [*args[:3], "", *args[4:]]
    assert await ctx.eval_raw(ctx.scripts.move, move_keys, kept) == [1, "already", "kept"]
