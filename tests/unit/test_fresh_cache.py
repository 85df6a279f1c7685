"""engine/fresh.py: the staleness bound, shared reads, failures not kept, clear() during a read,
the size bound."""

from __future__ import annotations

import asyncio

import pytest

from engine.fresh import FreshCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Source:
    """Counts reads; each returns the next integer, after ``gate`` opens if one is set."""

    def __init__(self) -> None:
        self.reads = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def read(self) -> int:
        self.reads += 1
        number = self.reads
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("read failed")
        return number


async def test_served_while_younger_than_max_age_then_read_again() -> None:
    """Age counts from the read's start: served below ``max_age``, read again at it."""
    clock, src = Clock(), Source()
    cache: FreshCache[str, int] = FreshCache(0.25, 10, clock=clock)
    assert await cache.get("k", src.read) == 1
    clock.now = 0.249
    assert await cache.get("k", src.read) == 1
    clock.now = 0.25
    assert await cache.get("k", src.read) == 2


async def test_valid_refuses_an_entry_early() -> None:
    """An entry ``valid`` rejects is read again although young."""
    clock, src = Clock(), Source()
    cache: FreshCache[str, int] = FreshCache(10, 10, clock=clock)
    assert await cache.get("k", src.read) == 1
    assert await cache.get("k", src.read, lambda v: v != 1) == 2


async def test_concurrent_misses_share_one_read_a_cancelled_caller_leaves_running() -> None:
    """Ten callers of one key during a read wait on it; cancelling the first leaves the read
    running for the others."""
    clock, src = Clock(), Source()
    src.gate = asyncio.Event()
    cache: FreshCache[str, int] = FreshCache(1, 10, clock=clock)
    first = asyncio.ensure_future(cache.get("k", src.read))
    others = [asyncio.ensure_future(cache.get("k", src.read)) for _ in range(9)]
    await asyncio.sleep(0)
    first.cancel()
    src.gate.set()
    assert await asyncio.gather(*others) == [1] * 9
    assert src.reads == 1
    assert await cache.get("k", src.read) == 1  # stored, though its first caller left


async def test_a_read_in_flight_too_old_is_not_joined() -> None:
    """A caller arriving when the read in flight began ``max_age`` ago starts its own."""
    clock, src = Clock(), Source()
    src.gate = asyncio.Event()
    cache: FreshCache[str, int] = FreshCache(0.25, 10, clock=clock)
    slow = asyncio.ensure_future(cache.get("k", src.read))
    await asyncio.sleep(0)
    clock.now = 0.3
    late = asyncio.ensure_future(cache.get("k", src.read))
    await asyncio.sleep(0)
    src.gate.set()
    assert sorted(await asyncio.gather(slow, late)) == [1, 2]
    assert src.reads == 2


async def test_a_failed_read_reaches_every_waiter_and_is_not_kept() -> None:
    clock, src = Clock(), Source()
    src.gate, src.fail = asyncio.Event(), True
    cache: FreshCache[str, int] = FreshCache(1, 10, clock=clock)
    waiters = [asyncio.ensure_future(cache.get("k", src.read)) for _ in range(3)]
    await asyncio.sleep(0)
    src.gate.set()
    for outcome in await asyncio.gather(*waiters, return_exceptions=True):
        assert isinstance(outcome, RuntimeError)
    src.fail, src.gate = False, None
    assert await cache.get("k", src.read) == 2
    assert len(cache) == 1


async def test_clear_during_a_read_keeps_its_answer_out() -> None:
    """A read that began before ``clear()`` (a write) answers its callers but is not stored,
    and later callers do not join it."""
    clock, src = Clock(), Source()
    src.gate = asyncio.Event()
    cache: FreshCache[str, int] = FreshCache(1, 10, clock=clock)
    before = asyncio.ensure_future(cache.get("k", src.read))
    await asyncio.sleep(0)
    cache.clear()
    src.gate.set()
    assert await before == 1
    assert len(cache) == 0
    src.gate = None
    assert await cache.get("k", src.read) == 2


@pytest.mark.parametrize("size", [1, 3])
async def test_past_the_size_the_cache_starts_over(size: int) -> None:
    """Never more than ``size`` entries; a key forgotten at the bound is read again."""
    clock, src = Clock(), Source()
    cache: FreshCache[int, int] = FreshCache(10, size, clock=clock)
    for key in range(size + 1):
        await cache.get(key, src.read)
    assert 1 <= len(cache) <= size
    assert await cache.get(0, src.read) == size + 2  # the first key was dropped: read again


async def test_forget_drops_one_key_and_keeps_its_read_in_flight_out() -> None:
    """``forget`` (a write to one key): that key is read again, a read of it already in flight
    answers its callers but is not stored nor joined, other keys stay."""
    clock, src = Clock(), Source()
    cache: FreshCache[str, int] = FreshCache(10, 10, clock=clock)
    assert await cache.get("other", src.read) == 1
    src.gate = asyncio.Event()
    before = asyncio.ensure_future(cache.get("k", src.read))
    await asyncio.sleep(0)
    cache.forget("k")
    after = asyncio.ensure_future(cache.get("k", src.read))
    await asyncio.sleep(0)
    src.gate.set()
    assert (await before, await after) == (2, 3)
    src.gate = None
    assert await cache.get("k", src.read) == 3
    cache.forget("k")
    assert await cache.get("k", src.read) == 4
    assert await cache.get("other", src.read) == 1
    cache.forget("never-read")
