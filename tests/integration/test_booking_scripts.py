"""The booking Lua scripts on a real redis-server: atomic reservation, idempotency by
appointment id, patient overlap across doctors, sweeper claims, overlap-free slot creation."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import keys
from engine.booking import AppointmentView, BookingService
from engine.booking._context import hold_keys
from engine.booking._store import APPT_SK, appt_pk, doctor_pk
from engine.errors import Conflict, Unavailable
from engine.timeutil import new_id, to_rfc3339
from tests.integration.conftest import (
    Clock,
    FakeAccounts,
    FlakyStore,
    booking_settings,
    doctor,
    patient,
    slots_of,
)

HOUR = 3_600_000
MIN = 60_000


async def test_reserve_script_is_idempotent_by_appointment_id(
    booking: BookingService, booking_redis: Redis, clock: Clock
) -> None:
    """Running reserve.lua twice with one appointment id reserves once and returns the same
    deadline; another id then gets slot_unavailable."""
    doc = doctor()
    (slot,) = await slots_of(booking, doc, [(clock.now + 5 * HOUR, clock.now + 6 * HOUR)])
    d = doc.user_id
    appt = new_id()
    args = [appt, "p1", clock.now, booking.ctx.ttl_ms, 15 * MIN, slot, "ch", "", "", ""]
    first = await booking.ctx.eval_raw(booking.ctx.scripts.reserve, hold_keys(d, slot), args)
    again = await booking.ctx.eval_raw(booking.ctx.scripts.reserve, hold_keys(d, slot), args)
    other = await booking.ctx.eval_raw(
        booking.ctx.scripts.reserve, hold_keys(d, slot), [new_id(), "p2", *args[2:]]
    )
    assert first[:2] == [1, "reserved"]
    assert again[:2] == [1, "already"]
    assert first[2:] == again[2:]
    assert other == [0, "slot_unavailable"]
    assert await booking_redis.zcard(keys.doctor_deadlines(d)) == 1


async def test_reservation_retried_after_a_timeout_makes_one_reservation(
    booking: BookingService, booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """The first reserve.lua call lands but its reply times out; the service retries, gets
    'already' and the patient gets one reservation (not slot_unavailable)."""
    doc = doctor()
    (slot,) = await slots_of(booking, doc, [(clock.now + 5 * HOUR, clock.now + 6 * HOUR)])
    real = booking.ctx.scripts.reserve.registered
    calls = 0

    async def lands_then_times_out(keys: Any = None, args: Any = None, client: Any = None) -> Any:
        nonlocal calls
        calls += 1
        result = await real(keys=keys, args=args)
        if calls == 1:
            raise RedisTimeoutError("reply lost")
        return result

    booking.ctx.scripts.reserve.registered = lands_then_times_out  # type: ignore[assignment]
    body = await booking.request_appointment(patient(), slot)
    assert calls == 2
    assert body.status == "requested"
    assert await booking_redis.zcard(keys.doctor_deadlines(doc.user_id)) == 1
    holds = await booking_store.inner.query(doctor_pk(doc.user_id), prefix="HOLD#")
    assert len(holds) == 1


async def test_one_winner_among_many_patients(booking: BookingService, clock: Clock) -> None:
    """100 patients reserve one slot at once: exactly one wins, 99 get slot_unavailable."""
    doc = doctor()
    (slot,) = await slots_of(booking, doc, [(clock.now + 5 * HOUR, clock.now + 6 * HOUR)])
    results = await asyncio.gather(
        *(booking.request_appointment(patient(), slot) for _ in range(100)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, AppointmentView)]
    losers = [r for r in results if isinstance(r, Conflict) and r.code == "slot_unavailable"]
    assert len(winners) == 1
    assert len(losers) == 99


async def test_patient_overlap_across_doctors_is_refused_even_concurrently(
    booking: BookingService, booking_redis: Redis, clock: Clock
) -> None:
    """One patient reserving overlapping slots of two doctors at once keeps exactly one; the
    other gets patient_overlap and that slot is open again."""
    start = clock.now + 5 * HOUR
    docs = [doctor(), doctor()]
    slots = [
        (await slots_of(booking, docs[0], [(start, start + HOUR)]))[0],
        (await slots_of(booking, docs[1], [(start + 30 * MIN, start + 90 * MIN)]))[0],
    ]
    pat = patient()
    for _ in range(5):
        results = await asyncio.gather(
            *(booking.request_appointment(pat, s) for s in slots), return_exceptions=True
        )
        ok = [r for r in results if isinstance(r, AppointmentView)]
        overlap = [r for r in results if isinstance(r, Conflict) and r.code == "patient_overlap"]
        if len(ok) == 1 and len(overlap) == 1:
            break
        raise AssertionError(results)
    lost = slots[results.index(overlap[0])]
    lost_doctor = docs[results.index(overlap[0])].user_id
    assert await booking_redis.hget(keys.slot(lost_doctor, lost), "status") == b"open"
    assert await booking_redis.zscore(keys.doctor_open_slots(lost_doctor), lost) is not None


async def test_adjacent_slots_do_not_overlap_for_a_patient(
    booking: BookingService, clock: Clock
) -> None:
    """A patient may hold back-to-back slots (end == next start)."""
    start = clock.now + 5 * HOUR
    slots = await slots_of(
        booking, doctor(), [(start, start + HOUR), (start + HOUR, start + 2 * HOUR)]
    )
    pat = patient()
    for s in slots:
        await booking.request_appointment(pat, s)


async def test_two_concurrent_sweepers_expire_each_request_once(
    booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """Two sweepers (two replicas) run at once over 30 due requests: 30 expiries in total,
    every slot open again, every appointment expired in the store."""
    services = [
        BookingService(
            booking_settings(), booking_store, booking_redis, FakeAccounts(booking_store),
            clock=clock,
        )
        for _ in range(2)
    ]  # fmt: skip
    a = services[0]
    appts: list[str] = []
    for _ in range(3):
        doc = doctor()
        start = clock.now + 5 * HOUR
        slots = await slots_of(
            a, doc, [(start + i * HOUR, start + i * HOUR + 50 * MIN) for i in range(10)]
        )
        for s in slots:
            body = await a.request_appointment(patient(), s)
            appts.append(body.id)
    clock.advance(a.ctx.ttl_ms + 1)
    counts = await asyncio.gather(*(s.expire_due() for s in services))
    assert sum(counts) == 30
    for appt_id in appts:
        item = await booking_store.inner.get(appt_pk(appt_id), APPT_SK)
        assert item is not None
        assert item.data["status"] == "expired"
    assert await booking_redis.zcard(keys.sweep_index()) == 0
    assert sum(await asyncio.gather(*(s.expire_due() for s in services))) == 0


async def test_fifty_concurrent_overlapping_creations_store_no_overlap(
    booking: BookingService, booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """50 concurrent create calls whose batches overlap each other: the slots that exist
    (Redis and store) never overlap, and every call either created all or nothing."""
    doc = doctor()
    base = clock.now + 24 * HOUR
    calls = []
    for i in range(50):
        start = base + (i % 10) * 20 * MIN  # batches shifted by 20 min, 50-min slots
        calls.append([(start + k * 4 * HOUR, start + k * 4 * HOUR + 50 * MIN) for k in range(3)])
    results = await asyncio.gather(
        *(slots_of(booking, doc, c) for c in calls), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, list)]
    assert all(
        isinstance(r, list) or (isinstance(r, Conflict) and r.code == "slot_overlap")
        for r in results
    )
    assert created
    items = await booking_store.inner.query(doctor_pk(doc.user_id), prefix="SLOT#")
    assert len(items) == 3 * len(created)
    spans = sorted((it.data["start"], it.data["end"]) for it in items)
    for (s1, e1), (s2, _) in itertools.pairwise(spans):
        assert e1 <= s2, "overlapping slots stored"
    assert await booking_redis.zcard(keys.doctor_slots(doc.user_id)) == len(items)


async def test_claim_script_contract(booking: BookingService, booking_redis: Redis) -> None:
    """claim.lua: not_hydrated without the marker; claims, is idempotent, refuses an overlap,
    prunes ended holds; counts undecided requests per doctor and in all until their
    deadline."""
    key = keys.patient_holds("p")
    claim = booking.ctx.scripts.claim

    def args(appt: str, start: int, end: int, now: int, doc: str = "d1") -> list[Any]:
        return [appt, start, end, now, doc, now + 1000, 2, 3]

    assert await booking.ctx.eval_raw(claim, [key], args("a", 100, 200, 0)) == [0, "not_hydrated"]
    await booking_redis.hset(key, "~h", "1")
    assert await booking.ctx.eval_raw(claim, [key], args("a", 100, 200, 0)) == [1, "claimed"]
    assert await booking.ctx.eval_raw(claim, [key], args("a", 100, 200, 0)) == [1, "already"]
    assert await booking.ctx.eval_raw(claim, [key], args("b", 150, 250, 0)) == [
        0, "patient_overlap", "a",
    ]  # fmt: skip
    assert await booking.ctx.eval_raw(claim, [key], args("b", 150, 250, 300)) == [1, "claimed"]
    assert await booking_redis.hexists(key, "a") == 0
    # Requests (deadline 1300 here): two at d1 reach the per-doctor cap, a third anywhere
    # the cap in all.
    assert await booking.ctx.eval_raw(claim, [key], args("c", 4000, 5000, 300)) == [1, "claimed"]
    assert await booking.ctx.eval_raw(claim, [key], args("c2", 5000, 6000, 300)) == [1, "claimed"]
    doctor_cap = [0, "request_limit", "doctor"]
    assert await booking.ctx.eval_raw(claim, [key], args("d", 6000, 7000, 300)) == doctor_cap
    assert await booking.ctx.eval_raw(claim, [key], args("d", 6000, 7000, 300, "d2")) == [
        1,
        "claimed",
    ]
    total_cap = [0, "request_limit", "total"]
    assert await booking.ctx.eval_raw(claim, [key], args("d4", 7000, 7500, 300, "d4")) == total_cap
    # Past their deadline the requests stop counting, though their holds stay.
    assert await booking.ctx.eval_raw(claim, [key], args("e", 8000, 9000, 1301)) == [1, "claimed"]
    assert await booking_redis.hexists(key, "c") == 1


async def test_large_batch_is_all_or_nothing_when_the_store_fails(
    booking: BookingService, booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """Over 100 slots the store write is put_many; if it fails the compensation removes what
    may have landed, nothing stays created (503), and a later identical call succeeds."""
    doc = doctor()
    start = clock.now + 24 * HOUR
    intervals = [(start + i * HOUR, start + i * HOUR + 50 * MIN) for i in range(150)]
    booking_store.failing_only = {"put_many"}
    with pytest.raises(Unavailable):
        await slots_of(booking, doc, intervals)
    assert await booking_redis.zcard(keys.doctor_slots(doc.user_id)) == 0
    assert await booking_store.inner.query(doctor_pk(doc.user_id), prefix="SLOT#") == []
    booking_store.failing_only = set()
    assert len(await slots_of(booking, doc, intervals)) == 150


async def test_large_batch_stays_unbookable_when_compensation_fails_too(
    booking: BookingService, booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """If the compensating deletes fail as well, the batch stays pending in Redis (neither
    listed nor bookable, still blocking overlaps) until rehydration takes the store's truth."""
    doc = doctor()
    start = clock.now + 24 * HOUR
    intervals = [(start + i * HOUR, start + i * HOUR + 50 * MIN) for i in range(120)]
    booking_store.failing = True
    with pytest.raises(Unavailable):
        await slots_of(booking, doc, intervals)
    booking_store.failing = False
    assert (
        await booking.list_own_slots(doc, to_rfc3339(start), to_rfc3339(start + 200 * HOUR)) == []
    )
    assert await booking_redis.zcard(keys.doctor_open_slots(doc.user_id)) == 0
    await booking.rebuild_doctor(doc.user_id, force=True)
    assert await booking_redis.zcard(keys.doctor_slots(doc.user_id)) == 0
    assert len(await slots_of(booking, doc, intervals)) == 120


async def test_window_script_reads_the_slots_it_is_given_in_one_call(
    booking: BookingService, booking_redis: Redis, clock: Clock
) -> None:
    """window.lua: each slot hash in KEYS answered as one tab-joined row, in KEYS order, a
    missing field as "" and a vanished hash as status ""."""
    doc = doctor()
    d = doc.user_id
    times = [(clock.now + (5 + i) * HOUR, clock.now + (5 + i) * HOUR + 50 * MIN) for i in range(3)]
    ids = await slots_of(booking, doc, times)
    await booking_redis.delete(keys.slot(d, ids[1]))
    reply = await booking.ctx.eval(booking.ctx.scripts.window, [keys.slot(d, i) for i in ids], [])
    rows = [row.split("\t") for row in reply.slots]
    assert (reply.ok, reply.outcome) == (1, "read")
    assert rows == [
        ["open", str(times[0][0]), str(times[0][1]), "", "", "", ""],
        ["", "", "", "", "", "", ""],
        ["open", str(times[2][0]), str(times[2][1]), "", "", "", ""],
    ]
