"""Slot creation stays cheap whatever the agenda holds: a 5-minute minimum, a cap on a
doctor's future slots, and an overlap check that looks at neighbours only (real redis)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster

from engine import keys
from engine.booking import BookingService, CreateSlots, SlotTimes, WeeklyRule
from engine.errors import Conflict, Invalid
from engine.timeutil import to_rfc3339
from tests.integration.conftest import (
    Clock,
    FakeAccounts,
    FlakyStore,
    booking_settings,
    doctor,
    slots_of,
)

HOUR = 3_600_000
MIN = 60_000
DAY = 24 * HOUR


def _service(redis: Redis, store: FlakyStore, clock: Clock, **settings: int) -> BookingService:
    return BookingService(
        booking_settings(**settings), store, redis, FakeAccounts(store), clock=clock
    )


async def test_a_slot_under_five_minutes_is_invalid(booking: BookingService, clock: Clock) -> None:
    """A 4-minute (or 1 ms) slot is 422 slot_too_short; a rule of 4-minute slots is 422."""
    doc = doctor()
    start = clock.now + DAY
    for length in (1, 4 * MIN):
        with pytest.raises(Invalid) as info:
            await slots_of(booking, doc, [(start, start + length)])
        assert info.value.code == "slot_too_short"
    day = to_rfc3339(clock.now + 2 * DAY)[:10]
    rule = WeeklyRule(
        from_=day, to=day, weekdays=list(range(1, 8)), start_time="08:00",
        end_time="09:00", timezone="UTC", duration_minutes=4, gap_minutes=0,
    )  # fmt: skip
    with pytest.raises(Invalid):
        await booking.create_slots(doc, CreateSlots(rule=rule))
    assert await slots_of(booking, doc, [(start, start + 5 * MIN)])


async def test_a_doctor_holds_at_most_the_configured_future_slots(
    booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """With a cap of 30, 30 future slots are created and a batch that would pass it is 409
    slot_limit with nothing created; a past slot does not count."""
    service = _service(booking_redis, booking_store, clock, max_future_slots=30)
    doc = doctor()
    base = clock.now + DAY
    await slots_of(service, doc, [(base + i * HOUR, base + i * HOUR + 30 * MIN) for i in range(29)])
    with pytest.raises(Conflict) as info:
        await slots_of(
            service, doc, [(base - 5 * HOUR, base - 4 * HOUR), (base - 3 * HOUR, base - 2 * HOUR)]
        )
    assert info.value.code == "slot_limit"
    assert await booking_redis.zcard(keys.doctor_slots(doc.user_id)) == 29
    await slots_of(service, doc, [(base - 3 * HOUR, base - 2 * HOUR)])
    clock.advance(DAY + HOUR)  # the first slots are past now
    await slots_of(service, doc, [(base + 40 * HOUR, base + 41 * HOUR)])


async def test_overlap_check_agrees_with_brute_force(
    booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """Random batches against a random agenda with pending edits: a batch is refused exactly
    when some interval of it overlaps an existing slot or a pending edit's new interval."""
    service = _service(booking_redis, booking_store, clock)
    rng = random.Random(14)
    doc = doctor()
    base = clock.now + DAY
    taken: list[tuple[int, int]] = []
    for i in range(60):
        start = base + i * 40 * MIN
        taken.append((start, start + rng.choice([10, 20, 30]) * MIN))
    ids = await slots_of(service, doc, taken)
    # Three pending edits (lock.lua without unlock): each holds its new interval as a shadow.
    for index, delta in ((5, 12), (20, 25), (40, -8)):
        s, e = taken[index]
        new = (s + delta * MIN, e + delta * MIN)
        others = [t for j, t in enumerate(taken) if j != index]
        if any(a < new[1] and new[0] < b for a, b in others):
            continue
        locked = await service.ctx.doctor_eval(
            service.ctx.scripts.lock, doc.user_id,
            [keys.slot(doc.user_id, ids[index]), keys.doctor_slots(doc.user_id),
             keys.doctor_slot_ends(doc.user_id), keys.doctor_open_slots(doc.user_id),
             keys.doctor_hydrated(doc.user_id)],
            [ids[index], "edit", new[0], new[1], 4 * HOUR],
        )  # fmt: skip
        assert locked.ok == 1
        taken.append(new)
    for _ in range(150):
        start = base + rng.randrange(0, 60 * 40) * MIN
        batch = [(start, start + rng.choice([5, 7, 15, 45]) * MIN)]
        expect_overlap = any(a < batch[0][1] and batch[0][0] < b for a, b in taken)
        if expect_overlap:
            with pytest.raises(Conflict) as info:
                await slots_of(service, doc, batch)
            assert info.value.code == "slot_overlap", batch
        else:
            await slots_of(service, doc, batch)
            taken.append(batch[0])


async def _script_micros(redis: Redis, service: BookingService, doc_id: str, start: int) -> int:
    """Create 48 back-to-back 5-minute slots from ``start``; the create script's run time
    (microseconds) as Redis's own SLOWLOG measured it."""
    # On a cluster the script runs on the master of the doctor's hash slot: read that node's log.
    at: dict[str, Any] = {}
    if isinstance(redis, RedisCluster):
        at["target_nodes"] = redis.get_node_from_key(keys.doctor_slots(doc_id))
    await redis.config_set("slowlog-log-slower-than", 0, **at)
    await redis.slowlog_reset(**at)
    body = CreateSlots(
        slots=[
            SlotTimes(
                start=to_rfc3339(start + i * 5 * MIN), end=to_rfc3339(start + (i + 1) * 5 * MIN)
            )
            for i in range(48)
        ]
    )
    principal = doctor(doc_id)
    await service.create_slots(principal, body)
    entries = await redis.slowlog_get(128, **at)
    await redis.config_set("slowlog-log-slower-than", 10_000, **at)
    commands = [(e["command"], int(e["duration"])) for e in entries]
    durations = [
        micros
        for command, micros in commands
        if (command if isinstance(command, bytes) else str(command).encode())
        .lower()
        .startswith(b"evalsha")
    ]
    assert durations, entries
    return max(durations)


async def test_the_create_script_time_stays_bounded_on_a_full_agenda(
    booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """A 48-slot batch takes about as long on an agenda holding 20,000 tiny slots in the four
    hours before it (as an agenda built before the 5-minute minimum could) as on an empty
    one: the overlap check looks at neighbours, not at a four-hour window. Best of three
    each, timed by Redis itself (SLOWLOG), so the comparison holds on a busy machine."""
    service = _service(booking_redis, booking_store, clock, max_future_slots=100_000)
    base = clock.now + DAY
    seeds = 20_000
    step = (4 * HOUR) // seeds
    empty_runs, full_runs = [], []
    for _ in range(3):
        empty, full = doctor(), doctor()
        for doc in (empty, full):  # hydrate both doctors the ordinary way
            await slots_of(service, doc, [(base - 10 * HOUR, base - 9 * HOUR)])
        starts = {f"{full.user_id}.seed{i:05d}": base - 4 * HOUR + i * step for i in range(seeds)}
        await booking_redis.zadd(keys.doctor_slots(full.user_id), starts)
        ends = {member: start + 2 for member, start in starts.items()}
        await booking_redis.hset(keys.doctor_slot_ends(full.user_id), mapping=ends)  # type: ignore[arg-type]
        empty_runs.append(await _script_micros(booking_redis, service, empty.user_id, base))
        full_runs.append(await _script_micros(booking_redis, service, full.user_id, base))
    baseline, loaded = min(empty_runs), min(full_runs)
    # Generous, so a busy machine cannot break it; the old four-hour scan over 20,000 seeds
    # overflowed Lua's stack (503) instead of finishing.
    assert loaded < 10 * baseline + 5_000, (empty_runs, full_runs)
