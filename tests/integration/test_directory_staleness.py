"""How stale a search page may be (engine/directory/_service.py, ``SEARCH_STALE_SECONDS``), on a
real redis-server: a change made behind the directory's back (a slot booked or published by
another process) shows within the bound and not later; a shown next open slot that closes to
requests is never served from the cache; the process's own directory writes show at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from engine import keys
from engine.booking import DECISION_LEAD_MS
from engine.directory import DirectoryService
from engine.directory._service import SEARCH_STALE_SECONDS
from engine.store import SQLiteStore
from engine.timeutil import now_ms, to_rfc3339
from tests.integration.test_directory import doctor
from tests.support import timeout


class FrozenClock:
    """The cache's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def directory(store: SQLiteStore, redis: Redis, clock: FrozenClock) -> DirectoryService:
    return DirectoryService(store, redis, clock=clock)


async def next_slot(directory: DirectoryService) -> str | None:
    (card,) = (await directory.search()).items
    return card.next_open_slot if isinstance(card.next_open_slot, str) else None


async def test_a_page_is_served_until_the_bound_and_not_after(
    directory: DirectoryService, redis: Redis, clock: FrozenClock
) -> None:
    """A slot booked elsewhere (gone from the open set) may still show for less than
    ``SEARCH_STALE_SECONDS`` after the page was read, never at or past it."""
    await directory.upsert_doctor(doctor("d"))
    first, second = now_ms() + 3_600_000, now_ms() + 7_200_000
    await redis.zadd(keys.doctor_open_slots("d"), {"s1": first, "s2": second})
    assert await next_slot(directory) == to_rfc3339(first)
    await redis.zrem(keys.doctor_open_slots("d"), "s1")  # booked through another process
    clock.now += SEARCH_STALE_SECONDS - 0.001
    assert await next_slot(directory) == to_rfc3339(first)  # stale, within the bound
    clock.now += 0.001
    assert await next_slot(directory) == to_rfc3339(second)


async def test_the_bound_holds_on_the_real_clock(store: SQLiteStore, redis: Redis) -> None:
    """With the real clock, a change behind the directory's back shows within the bound."""
    directory = DirectoryService(store, redis)
    await directory.upsert_doctor(doctor("d"))
    first, second = now_ms() + 3_600_000, now_ms() + 7_200_000
    await redis.zadd(keys.doctor_open_slots("d"), {"s1": first, "s2": second})
    read_at = time.monotonic()
    assert await next_slot(directory) == to_rfc3339(first)
    await redis.zrem(keys.doctor_open_slots("d"), "s1")
    while await next_slot(directory) != to_rfc3339(second):
        assert time.monotonic() - read_at < SEARCH_STALE_SECONDS + timeout(0.5)
        await asyncio.sleep(0.01)
    assert time.monotonic() - read_at >= SEARCH_STALE_SECONDS * 0.9  # the cache did serve


async def test_a_slot_that_closed_to_requests_is_not_served(
    directory: DirectoryService, redis: Redis
) -> None:
    """A cached page whose next open slot has come within the request lead (15 min before its
    start) is read again, even while the page is young: the card moves to the next slot."""
    await directory.upsert_doctor(doctor("d"))
    margin_ms = int(timeout(0.5) * 1000)  # to read the page while the slot is still open
    closing = now_ms() + DECISION_LEAD_MS + margin_ms
    later = now_ms() + 3_600_000
    await redis.zadd(keys.doctor_open_slots("d"), {"closing": closing, "later": later})
    assert await next_slot(directory) == to_rfc3339(closing)
    await asyncio.sleep(margin_ms / 1000 + 0.05)  # the cache clock is frozen: only the slot closed
    assert await next_slot(directory) == to_rfc3339(later)


async def test_own_writes_show_at_once(
    directory: DirectoryService, redis: Redis, clock: FrozenClock
) -> None:
    """A doctor added, re-rated or removed through this directory shows on the next search,
    although the cache clock has not moved."""
    await directory.upsert_doctor(doctor("a", average=3.0, count=1))
    assert [c.id for c in (await directory.search()).items] == ["a"]
    await directory.upsert_doctor(doctor("b", average=4.0, count=1))
    assert [c.id for c in (await directory.search()).items] == ["b", "a"]
    await directory.update_rating("a", 5.0, 2)
    assert [c.id for c in (await directory.search()).items] == ["a", "b"]
    await directory.remove_doctor("a")
    assert [c.id for c in (await directory.search()).items] == ["b"]


async def test_concurrent_identical_searches_share_one_read(
    directory: DirectoryService, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fifty identical searches at once read Redis once and all get the same page; a
    different filter is a read of its own."""
    await directory.upsert_doctor(doctor("a"))
    reads = 0
    real = directory._search

    async def counted(*args: object) -> object:
        nonlocal reads
        reads += 1
        return await real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(directory, "_search", counted)
    pages = await asyncio.gather(*(directory.search(specialty="cardiologia") for _ in range(50)))
    assert reads == 1
    assert all(p == pages[0] for p in pages)
    assert [c.id for c in pages[0].items] == ["a"]
    await directory.search(specialty="dermatologia")
    assert reads == 2
