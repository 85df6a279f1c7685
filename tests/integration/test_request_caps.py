"""One patient cannot hold a whole agenda: undecided requests are capped per doctor and in
all, atomically across replicas and doctors (claim.lua on the patient's hash tag)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from engine.booking import BookingService
from engine.errors import Conflict
from tests.integration.conftest import (
    Clock,
    FakeAccounts,
    FlakyStore,
    book,
    booking_settings,
    doctor,
    patient,
    slots_of,
)

HOUR = 3_600_000
DAY = 24 * HOUR


@pytest.fixture
def capped(booking_redis: Redis, booking_store: FlakyStore, clock: Clock) -> BookingService:
    settings = booking_settings(request_limit_per_doctor=3, request_limit_total=5)
    return BookingService(
        settings, booking_store, booking_redis, FakeAccounts(booking_store), clock=clock
    )


async def _slots(
    service: BookingService, clock: Clock, n: int, offset: int = 0
) -> tuple[object, list[str]]:
    doc = doctor()
    base = clock.now + DAY + offset * HOUR
    ids = await slots_of(
        service, doc, [(base + i * HOUR, base + i * HOUR + 30 * 60_000) for i in range(n)]
    )
    return doc, ids


async def test_a_patient_holds_at_most_three_requests_with_one_doctor(
    capped: BookingService, clock: Clock
) -> None:
    """The fourth request to one doctor is 409 request_limit and leaves the slot open; a
    refusal frees a place."""
    doc, ids = await _slots(capped, clock, 5)
    pat = patient()
    made = [await book(capped, pat, slot) for slot in ids[:3]]
    with pytest.raises(Conflict) as info:
        await book(capped, pat, ids[3])
    assert info.value.code == "request_limit"
    assert (await book(capped, patient(), ids[3]))["status"] == "requested"  # still open
    await capped.refuse(doc, made[0]["id"])  # type: ignore[arg-type]
    assert (await book(capped, pat, ids[4]))["status"] == "requested"


async def test_the_total_cap_spans_doctors(capped: BookingService, clock: Clock) -> None:
    """Five requests over three doctors, then the sixth (to a fourth doctor) is refused."""
    pat = patient()
    for offset, count in ((0, 2), (10, 2), (20, 1)):
        _, ids = await _slots(capped, clock, count, offset)
        for slot in ids:
            await book(capped, pat, slot)
    _, (last,) = await _slots(capped, clock, 1, 30)
    with pytest.raises(Conflict) as info:
        await book(capped, pat, last)
    assert info.value.code == "request_limit"


async def test_an_accepted_request_stops_counting(capped: BookingService, clock: Clock) -> None:
    """Once the doctor accepts, the appointment is no longer an undecided request."""
    doc, ids = await _slots(capped, clock, 4)
    pat = patient()
    first = await book(capped, pat, ids[0])
    for slot in ids[1:3]:
        await book(capped, pat, slot)
    await capped.accept(doc, first["id"])  # type: ignore[arg-type]
    assert (await book(capped, pat, ids[3]))["status"] == "requested"


async def test_concurrent_requests_of_one_patient_respect_the_cap(
    capped: BookingService, clock: Clock
) -> None:
    """Twelve requests of one patient to one doctor at once: exactly three succeed, the
    others are request_limit, and their slots are open again."""
    _, ids = await _slots(capped, clock, 12)
    pat = patient()
    results = await asyncio.gather(
        *(book(capped, pat, slot) for slot in ids), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 3
    assert {r.code for r in results if isinstance(r, Conflict)} == {"request_limit"}
    other = patient()
    freed = [slot for slot, r in zip(ids, results, strict=True) if not isinstance(r, dict)]
    assert (await book(capped, other, freed[0]))["status"] == "requested"
