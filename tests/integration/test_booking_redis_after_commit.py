"""Booking when Redis fails after the store has committed, on a real redis-server and SQLite.

Once the durable write has landed the store is the truth: the call returns its committed
result, and the doctor is rebuilt from the store on its next use instead of Redis staying
wrong. Also: a forced rebuild keeps in-flight creates, edits and reservations, so they cannot
be overlapped or lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from engine import keys
from engine.booking import BookingService
from engine.booking._store import doctor_pk
from engine.errors import Conflict, Unavailable
from engine.principal import Principal
from engine.store import Op
from engine.timeutil import to_rfc3339
from tests.integration.conftest import (
    Clock,
    FakeAccounts,
    FlakyStore,
    another_client,
    book,
    booking_settings,
    doctor,
    list_doctor,
    patient,
    slots_of,
)

HOUR = 3_600_000
MIN = 60_000


@contextmanager
def failing_script(
    booking: BookingService, monkeypatch: pytest.MonkeyPatch, name: str
) -> Iterator[None]:
    """Every run of the named Lua script fails as if Redis had dropped the connection."""
    real = booking.ctx.doctor_eval
    script = getattr(booking.ctx.scripts, name)

    async def flaky(target: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if target is script:
            raise Unavailable("redis failed", code="redis_unavailable")
        return await real(target, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(booking.ctx, "doctor_eval", flaky)
        yield


@contextmanager
def failing_deletes(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """DEL fails too (Redis down), so the doctor's marker cannot be dropped."""

    async def down(*_: Any, **__: Any) -> int:
        raise RedisConnectionError("redis is down")

    with monkeypatch.context() as patch:
        patch.setattr(redis, "delete", down)
        yield


@pytest.fixture
async def replica(
    booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> AsyncIterator[BookingService]:
    """A second engine process on the same Redis (or cluster) and store."""
    client = another_client(booking_redis)
    yield BookingService(
        booking_settings(), booking_store, client, FakeAccounts(booking_store), clock=clock
    )
    await client.aclose()


async def assert_booked(
    booking: BookingService, redis: Redis, doc: Principal, pat: Principal, slot: str, appt: str
) -> None:
    assert (await booking.get_appointment(pat, appt)).status == "confirmed"
    assert await redis.hget(keys.slot(doc.user_id, slot), "status") == b"booked"
    assert await redis.zscore(keys.doctor_open_slots(doc.user_id), slot) is None
    assert await redis.zscore(keys.doctor_deadlines(doc.user_id), appt) is None
    assert appt.encode() in await redis.hkeys(keys.patient_holds(pat.user_id))
    assert [s.status for s in (await booking.agenda(doc.user_id, None, None)).slots] == ["taken"]
    with pytest.raises(Conflict) as info:
        await book(booking, patient(), slot)
    assert info.value.code == "slot_unavailable"


# --- 1. accept committed, accept.lua failed ---------------------------------------------------


async def test_accept_redis_failure_then_sweeper_keeps_the_booking(
    booking: BookingService,
    booking_redis: Redis,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """accept.lua fails after the confirmation was stored: the accept still answers confirmed,
    and at the deadline the sweeper neither reopens the slot nor drops the patient's hold; the
    patient cannot book an overlapping slot of another doctor."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    (other,) = await slots_of(booking, doctor(), [(start, start + HOUR)])
    appt = (await book(booking, pat, slot))["id"]
    with failing_script(booking, monkeypatch, "accept"):
        view = await booking.accept(doc, appt)
    assert view.status == "confirmed"
    clock.advance(booking.ctx.ttl_ms + 1)
    assert await booking.expire_due() == 0
    await assert_booked(booking, booking_redis, doc, pat, slot, appt)
    with pytest.raises(Conflict) as info:
        await book(booking, pat, other)
    assert info.value.code == "patient_overlap"


async def test_sweeper_resyncs_a_confirmed_request_left_in_redis(
    booking: BookingService,
    replica: BookingService,
    booking_redis: Redis,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis still holds the request (accept.lua failed, and so did dropping the doctor's
    marker): the sweeper of another replica finds it confirmed in the store at the deadline and
    marks the slot booked instead of reopening it."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    appt = (await book(booking, pat, slot))["id"]
    with (
        failing_script(booking, monkeypatch, "accept"),
        failing_deletes(booking.ctx.redis, monkeypatch),
        suppress(Unavailable),  # the old behaviour; what matters is what the sweeper does
    ):
        await booking.accept(doc, appt)
    assert await booking_redis.hget(keys.slot(doc.user_id, slot), "status") == b"requested"
    clock.advance(booking.ctx.ttl_ms + 1)
    assert await replica.expire_due() == 0
    await assert_booked(replica, booking_redis, doc, pat, slot, appt)


# --- 2. the store committed, then the Redis step failed --------------------------------------


async def test_cancel_with_failing_reopen_succeeds_and_the_slot_is_bookable(
    booking: BookingService, booking_redis: Redis, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    appt = (await book(booking, pat, slot))["id"]
    await booking.accept(doc, appt)
    with failing_script(booking, monkeypatch, "reopen"):
        view = await booking.cancel(pat, appt, "a change of plans")
    assert view.status == "cancelled"
    assert appt.encode() not in await booking_redis.hkeys(keys.patient_holds(pat.user_id))
    assert [s.status for s in (await booking.agenda(doc.user_id, None, None)).slots] == ["open"]
    again = await book(booking, patient(), slot)
    assert again["status"] == "requested"


async def test_refuse_with_redis_down_recovers_when_redis_returns(
    booking: BookingService, booking_redis: Redis, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither reopen.lua nor dropping the marker works (Redis down): the refusal stands, and
    when Redis comes back with its old data this process rebuilds the doctor on next use."""
    doc = doctor()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    appt = (await book(booking, patient(), slot))["id"]
    with (
        failing_script(booking, monkeypatch, "reopen"),
        failing_deletes(booking.ctx.redis, monkeypatch),
    ):
        view = await booking.refuse(doc, appt)
    assert view.status == "refused"
    assert await booking_redis.exists(keys.doctor_hydrated(doc.user_id))  # old data is back
    assert (await book(booking, patient(), slot))["status"] == "requested"


async def test_edit_with_failing_unlock_leaves_the_slot_usable(
    booking: BookingService, booking_redis: Redis, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = doctor()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    new_start = start + 2 * HOUR
    with failing_script(booking, monkeypatch, "unlock"):
        view = await booking.update_slot(
            doc, slot, to_rfc3339(new_start), to_rfc3339(new_start + HOUR)
        )
    assert view.start == to_rfc3339(new_start)
    own = await booking.list_own_slots(doc, None, None)
    assert [(s.id, s.start, s.status) for s in own] == [(slot, to_rfc3339(new_start), "open")]
    # the old interval is free, the new one taken
    await slots_of(booking, doc, [(start, start + HOUR)])
    with pytest.raises(Conflict):
        await slots_of(booking, doc, [(new_start + 30 * MIN, new_start + 90 * MIN)])
    assert (await book(booking, patient(), slot))["status"] == "requested"


async def test_delete_with_failing_unlock_succeeds(
    booking: BookingService, booking_redis: Redis, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = doctor()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    with failing_script(booking, monkeypatch, "unlock"):
        await booking.delete_slot(doc, slot)
    assert await booking.list_own_slots(doc, None, None) == []
    await slots_of(booking, doc, [(start, start + HOUR)])


async def test_create_with_failing_commit_returns_the_stored_slots(
    booking: BookingService, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = doctor()
    start = clock.now + 5 * HOUR
    with failing_script(booking, monkeypatch, "commit"):
        (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    own = await booking.list_own_slots(doc, None, None)
    assert [(s.id, s.status) for s in own] == [(slot, "open")]
    assert (await book(booking, patient(), slot))["status"] == "requested"


# --- 3. a forced rebuild during in-flight creates and edits ---------------------------------


async def _paused_transact(
    booking_store: FlakyStore, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, asyncio.Event]:
    """The next store transaction waits for ``gate``; ``entered`` is set when it starts."""
    gate, entered = asyncio.Event(), asyncio.Event()
    inner = booking_store.transact
    calls = {"n": 0}

    async def slow(ops: list[Op]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            entered.set()
            await gate.wait()
        await inner(ops)

    monkeypatch.setattr(booking_store, "transact", slow)
    return gate, entered


async def test_forced_rebuild_during_a_create_allows_no_overlap(
    booking: BookingService,
    booking_store: FlakyStore,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A forced rebuild of the doctor, and a forced full rebuild (``healthmed rebuild``),
    while a create is being stored keep its pending slots: an overlapping create is 409."""
    doc = doctor()
    await list_doctor(booking_store.inner, doc)
    start = clock.now + 5 * HOUR
    await slots_of(booking, doc, [(start + 10 * HOUR, start + 11 * HOUR)])
    gate, entered = await _paused_transact(booking_store, monkeypatch)
    first = asyncio.create_task(slots_of(booking, doc, [(start, start + HOUR)]))
    await entered.wait()
    await booking.rebuild_doctor(doc.user_id, force=True)
    assert await booking.rebuild(force=True) == 1
    with pytest.raises(Conflict) as info:
        await slots_of(booking, doc, [(start + 30 * MIN, start + 90 * MIN)])
    assert info.value.code == "slot_overlap"
    gate.set()
    (created,) = await first
    stored = await booking_store.inner.query(doctor_pk(doc.user_id), prefix="SLOT#")
    assert len(stored) == 2
    own = await booking.list_own_slots(doc, None, None)
    assert (own[0].id, own[0].status) == (created, "open")


async def test_forced_rebuild_during_an_edit_keeps_the_lock(
    booking: BookingService,
    booking_store: FlakyStore,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = doctor()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    new_start = start + 3 * HOUR
    gate, entered = await _paused_transact(booking_store, monkeypatch)
    edit = asyncio.create_task(
        booking.update_slot(doc, slot, to_rfc3339(new_start), to_rfc3339(new_start + HOUR))
    )
    await entered.wait()
    await booking.rebuild_doctor(doc.user_id, force=True)
    with pytest.raises(Conflict):  # the new interval is reserved by the edit
        await slots_of(booking, doc, [(new_start + 30 * MIN, new_start + 90 * MIN)])
    with pytest.raises(Conflict):  # the locked slot cannot be booked meanwhile
        await book(booking, patient(), slot)
    gate.set()
    await edit
    own = await booking.list_own_slots(doc, None, None)
    assert [(s.id, s.start, s.status) for s in own] == [(slot, to_rfc3339(new_start), "open")]
    stored = await booking_store.inner.query(doctor_pk(doc.user_id), prefix="SLOT#")
    assert len(stored) == 1


async def test_forced_rebuild_during_a_reservation_keeps_it_taken_and_expiring(
    booking: BookingService,
    booking_store: FlakyStore,
    booking_redis: Redis,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebuild while a request is being stored (the store still has the slot open) keeps
    the slot taken with its deadline: not bookable, not listed open, expired on time."""
    doc = doctor()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    gate, entered = await _paused_transact(booking_store, monkeypatch)
    first = asyncio.create_task(book(booking, patient(), slot))
    await entered.wait()
    await booking.rebuild_doctor(doc.user_id, force=True)
    assert await booking_redis.zscore(keys.doctor_open_slots(doc.user_id), slot) is None
    with pytest.raises(Conflict) as info:
        await book(booking, patient(), slot)
    assert info.value.code == "slot_unavailable"
    gate.set()
    appt = await first
    assert appt["status"] == "requested"
    clock.advance(booking.ctx.ttl_ms + 1)
    assert await booking.expire_due() == 1
    assert (await booking.get_appointment(doc, appt["id"])).status == "expired"
    assert await booking_redis.zscore(keys.doctor_open_slots(doc.user_id), slot) == start


async def test_rehydrate_leaves_hydrated_doctors_alone(
    booking: BookingService, booking_redis: Redis, booking_store: FlakyStore, clock: Clock
) -> None:
    """The watcher's rebuild() rebuilds only doctors whose marker is missing."""
    doc = doctor()
    await list_doctor(booking_store.inner, doc)
    start = clock.now + 5 * HOUR
    await slots_of(booking, doc, [(start, start + HOUR)])
    assert await booking.rebuild() == 0
    await booking_redis.delete(keys.doctor_hydrated(doc.user_id))
    assert await booking.rebuild() == 1
