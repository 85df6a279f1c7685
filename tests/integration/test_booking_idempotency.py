"""Durable ``Idempotency-Key`` records on a real redis-server and SQLite: a key replays its first
outcome after Redis loses everything, also when Redis is lost between a reservation and its
store write, and a duplicate in flight never books twice."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from engine import keys
from engine.booking import BookingService
from engine.booking._idempotency import TTL_MS, record_sk
from engine.errors import Conflict, Invalid
from engine.store import Op
from tests.integration.conftest import Clock, FlakyStore, book, doctor, patient, slots_of

HOUR = 3_600_000


async def appointments_of(store: FlakyStore, patient_id: str) -> list[dict[str, Any]]:
    return [item.data for item in await store.inner.query(f"USER#{patient_id}", prefix="APPT#")]


async def test_each_key_replays_its_first_response_after_redis_is_flushed(
    booking: BookingService, booking_store: FlakyStore, booking_redis: Redis, clock: Clock
) -> None:
    """Keys whose appointments were refused, expired, requested and confirmed, and a key whose
    first outcome was a 409, replay that first outcome after FLUSHALL; nothing new is booked
    and the key for another slot is still 422."""
    doc, pat, rival = doctor(), patient(), patient()
    start = clock.now + 5 * HOUR
    slots = await slots_of(
        booking, doc, [(start + i * HOUR, start + (i + 1) * HOUR) for i in range(4)]
    )
    names = ["refused", "expired", "requested", "confirmed"]
    first = {"expired": await book(booking, pat, slots[1], "key-expired")}
    clock.advance(booking.ctx.ttl_ms)
    assert await booking.expire_due() == 1
    for name, slot in zip(names, slots, strict=True):
        if name != "expired":
            first[name] = await book(booking, pat, slot, f"key-{name}")
    with pytest.raises(Conflict):
        await book(booking, rival, slots[0], "rival")
    await booking.refuse(doc, first["refused"]["id"])  # slots[0] is open again
    await booking.accept(doc, first["confirmed"]["id"])

    await booking_redis.flushdb()
    for name, slot in zip(names, slots, strict=True):
        assert await book(booking, pat, slot, f"key-{name}") == first[name], name
    with pytest.raises(Conflict) as info:
        await book(booking, rival, slots[0], "rival")
    assert info.value.code == "slot_unavailable"
    with pytest.raises(Invalid) as reused:
        await book(booking, pat, slots[1], "key-refused")
    assert reused.value.code == "idempotency_key_reused"
    assert len(await appointments_of(booking_store, pat.user_id)) == 4
    assert await appointments_of(booking_store, rival.user_id) == []
    # The replay rebuilt the Redis copy: the next replay needs no store read.
    assert await booking_redis.get(keys.patient_idempotent_response(pat.user_id, "key-refused"))


async def test_a_lapsed_key_books_afresh(
    booking: BookingService, booking_store: FlakyStore, booking_redis: Redis, clock: Clock
) -> None:
    """After its 24 hours a key is new again: its record is overwritten by the next use."""
    doc, pat = doctor(), patient()
    start = clock.now + 30 * HOUR
    one, two = await slots_of(
        booking, doc, [(start, start + HOUR), (start + HOUR, start + 2 * HOUR)]
    )
    a = await book(booking, pat, one, "k")
    await booking.refuse(doc, a["id"])
    clock.advance(TTL_MS)
    await booking_redis.flushdb()
    b = await book(booking, pat, two, "k")
    assert b["id"] != a["id"]
    record = await booking_store.inner.get(f"USER#{pat.user_id}", record_sk("k"))
    assert record is not None
    assert record.data["appointment_id"] == b["id"]
    assert record.version == 2


class GatedStore(FlakyStore):
    """Once armed, holds the next ``transact`` at a gate until the test opens it."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.arrived = asyncio.Event()
        self.gate = asyncio.Event()
        self.armed = False

    async def transact(self, ops: Sequence[Op]) -> None:
        if self.armed:
            self.armed = False
            self.arrived.set()
            await asyncio.wait_for(self.gate.wait(), 30)
        await self.inner.transact(ops)


@pytest.fixture
def gated(booking: BookingService, booking_store: FlakyStore) -> GatedStore:
    store = GatedStore(booking_store.inner)
    booking.ctx.store = store
    return store


async def test_a_duplicate_while_the_first_is_in_flight_gets_the_same_appointment(
    booking: BookingService, gated: GatedStore, booking_redis: Redis, clock: Clock
) -> None:
    """A retry arriving while the first attempt waits on its store write reuses its
    reservation; whichever writes first, both answer the same body and one appointment
    exists, its slot still requested in Redis (never reopened by the loser)."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    gated.armed = True
    first = asyncio.create_task(book(booking, pat, slot, "k"))
    await gated.arrived.wait()
    second = await book(booking, pat, slot, "k")
    gated.gate.set()
    assert await first == second
    assert len(await appointments_of(gated, pat.user_id)) == 1
    held = await booking_redis.hgetall(keys.slot(doc.user_id, slot))
    assert held[b"status"] == b"requested"
    assert held[b"appointment_id"] == second["id"].encode()


async def test_redis_lost_between_reservation_and_store_write_books_once(
    booking: BookingService, gated: GatedStore, booking_redis: Redis, clock: Clock
) -> None:
    """Redis is flushed while the first attempt waits on its store write; a retry with the key
    reserves again on the rebuilt Redis under a new id and stores first. The first attempt's
    write then fails and it replays the retry's response: one appointment, one answer, and
    Redis agrees with the store."""
    doc, pat = doctor(), patient()
    start = clock.now + 5 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + HOUR)])
    gated.armed = True
    first = asyncio.create_task(book(booking, pat, slot, "k"))
    await gated.arrived.wait()
    await booking_redis.flushdb()
    second = await book(booking, pat, slot, "k")
    gated.gate.set()
    assert await first == second
    (stored,) = await appointments_of(gated, pat.user_id)
    assert stored["id"] == second["id"]
    held = await booking_redis.hgetall(keys.slot(doc.user_id, slot))
    assert held[b"status"] == b"requested"
    assert held[b"appointment_id"] == second["id"].encode()
    assert await book(booking, pat, slot, "k") == second
