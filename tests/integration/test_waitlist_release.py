"""The waitlist's release script and hand-over on real Redis (and the cluster) with SQLite:
first come first served among covering entries, declines and deletions pass on, lapsed holds
are swept, a flush rebuilds the same hold, a process killed mid-hand-over leaves the slot held
or open (never held forever), and a 10,000-entry waitlist hands over at the cost of a
10-entry one."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from engine import keys
from engine.booking import BookingService
from engine.principal import Principal
from engine.store import SQLiteStore
from engine.timeutil import to_rfc3339
from engine.waitlist import CreateEntry, WaitlistService
from engine.waitlist import _store as st
from engine.waitlist._model import Entry
from tests.integration.conftest import (
    BOOKING_DB,
    Clock,
    FakeAccounts,
    FlakyStore,
    booking_settings,
    doctor,
    patient,
    slots_of,
)
from tests.support import RedisServer

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


@pytest.fixture
def waitlist(
    booking_redis: Redis, booking_store: FlakyStore, booking: BookingService, clock: Clock
) -> WaitlistService:
    return WaitlistService(
        booking_settings(),
        booking_store,
        booking_redis,
        FakeAccounts(booking_store),
        booking,
        clock=clock,
    )


async def wait(
    waitlist: WaitlistService, who: Principal, doc: Principal, start: int, end: int
) -> str:
    body = CreateEntry(doctor_id=doc.user_id, from_=to_rfc3339(start), to=to_rfc3339(end))
    return (await waitlist.create(who, body)).id


async def hold_of(redis: Redis, doc: Principal, slot: str) -> tuple[str, str | None]:
    status, entry = await redis.hmget(keys.slot(doc.user_id, slot), "status", "hold_entry")
    return status.decode(), entry.decode() if entry else None


async def stored_slot(store: Any, doc: Principal, slot: str) -> dict[str, Any]:
    items = await store.query(f"DOC#{doc.user_id}", prefix="SLOT#")
    return next(i.data for i in items if i.data["id"] == slot)


async def test_a_freed_slot_goes_to_the_earliest_entry_whose_window_covers_it(
    booking: BookingService,
    waitlist: WaitlistService,
    booking_redis: Redis,
    clock: Clock,
    booking_store: FlakyStore,
) -> None:
    """Entries A (window ends before the slot), B, C (both cover it): B holds it, then C after
    B declines, then it opens after C declines; nobody is offered it twice; the store says
    the same as Redis at each step."""
    doc = doctor()
    start = clock.now + 3 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + 50 * MIN)])
    a, b, c = patient(), patient(), patient()
    await wait(waitlist, a, doc, clock.now + HOUR, start + 10 * MIN)
    eb = await wait(waitlist, b, doc, clock.now + HOUR, start + DAY)
    ec = await wait(waitlist, c, doc, clock.now + HOUR, start + DAY)
    assert await waitlist.release(doc.user_id, slot, start, start + 50 * MIN, mode="slot") == "held"
    assert await hold_of(booking_redis, doc, slot) == ("held", eb)
    data = await stored_slot(booking_store, doc, slot)
    assert (data["status"], data["hold_entry_id"], data["patient_id"]) == ("held", eb, b.user_id)
    mine = (await waitlist.list_own(b)).items[0]
    assert mine.offer is not None
    assert mine.offer.slot.id == slot
    await waitlist.decline(b, eb)
    assert await hold_of(booking_redis, doc, slot) == ("held", ec)
    assert (await waitlist.list_own(b)).items[0].offer is None
    await waitlist.decline(c, ec)
    assert await hold_of(booking_redis, doc, slot) == ("open", None)
    assert (await stored_slot(booking_store, doc, slot))["status"] == "open"
    assert await booking_redis.zscore(keys.doctor_open_slots(doc.user_id), slot) == start


async def test_deleting_the_holding_entry_passes_the_slot_on(
    booking: BookingService, waitlist: WaitlistService, booking_redis: Redis, clock: Clock
) -> None:
    """The holder leaves the waitlist: the next entry holds the slot at once."""
    doc = doctor()
    start = clock.now + 3 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + 50 * MIN)])
    p1, p2 = patient(), patient()
    e1 = await wait(waitlist, p1, doc, clock.now + HOUR, start + DAY)
    e2 = await wait(waitlist, p2, doc, clock.now + HOUR, start + DAY)
    await waitlist.release(doc.user_id, slot, start, start + 50 * MIN, mode="slot")
    assert await hold_of(booking_redis, doc, slot) == ("held", e1)
    await waitlist.delete(p1, e1)
    assert await hold_of(booking_redis, doc, slot) == ("held", e2)
    assert [e.position for e in (await waitlist.list_own(p2)).items] == [1]


async def test_a_lapsed_hold_is_swept_to_the_next_entry_then_opens(
    booking: BookingService, waitlist: WaitlistService, booking_redis: Redis, clock: Clock
) -> None:
    """Past its expiry the sweep passes the hold on (once, whatever the repeats), and the
    entry that let it lapse keeps waiting without being offered that slot again."""
    doc = doctor()
    start = clock.now + 3 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + 50 * MIN)])
    p1, p2 = patient(), patient()
    e1 = await wait(waitlist, p1, doc, clock.now + HOUR, start + DAY)
    e2 = await wait(waitlist, p2, doc, clock.now + HOUR, start + DAY)
    await waitlist.release(doc.user_id, slot, start, start + 50 * MIN, mode="slot")
    assert await waitlist.sweep_once() == 0
    clock.advance(waitlist.hold_ms)
    assert await waitlist.sweep_once() == 1
    assert await waitlist.sweep_once() == 0
    assert await hold_of(booking_redis, doc, slot) == ("held", e2)
    clock.advance(waitlist.hold_ms)
    assert await waitlist.sweep_once() == 1
    assert await hold_of(booking_redis, doc, slot) == ("open", None)
    assert [e.id for e in (await waitlist.list_own(p1)).items] == [e1]


async def test_a_hold_is_rebuilt_after_a_flush_with_the_same_holder_and_expiry(
    booking: BookingService, waitlist: WaitlistService, booking_redis: Redis, clock: Clock
) -> None:
    """FLUSHDB while a slot is held: the next use rebuilds the slot held for the same entry
    until the same expiry, and the sweep still passes it on at that expiry."""
    doc = doctor()
    start = clock.now + 3 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + 50 * MIN)])
    p1, p2 = patient(), patient()
    e1 = await wait(waitlist, p1, doc, clock.now + HOUR, start + DAY)
    e2 = await wait(waitlist, p2, doc, clock.now + HOUR, start + DAY)
    await waitlist.release(doc.user_id, slot, start, start + 50 * MIN, mode="slot")
    before = await booking_redis.hget(keys.slot(doc.user_id, slot), "hold_expires")
    await booking_redis.flushdb()
    view = (await waitlist.list_own(p1)).items[0]
    assert view.offer is not None
    await booking.rebuild_doctor(doc.user_id)
    assert await hold_of(booking_redis, doc, slot) == ("held", e1)
    assert await booking_redis.hget(keys.slot(doc.user_id, slot), "hold_expires") == before
    await waitlist.reindex([doc.user_id])
    clock.advance(waitlist.hold_ms)
    assert await waitlist.sweep_once() == 1
    assert await hold_of(booking_redis, doc, slot) == ("held", e2)


async def test_a_process_killed_mid_hand_over_leaves_the_slot_held_then_passed_on_or_open(
    booking: BookingService, waitlist: WaitlistService, booking_redis: Redis, clock: Clock,
    booking_store: FlakyStore,
) -> None:  # fmt: skip
    """The process dies after release.lua held the slot and before the store recorded it: a
    restarted process (new services, same Redis and store) sees it held until the expiry, then
    its sweep (re-indexed at start) passes it on, recorded in the store; had Redis been lost
    too, the store's open slot comes back open. Never held forever, never two holders."""
    doc = doctor()
    start = clock.now + 3 * HOUR
    (slot,) = await slots_of(booking, doc, [(start, start + 50 * MIN)])
    p1, p2 = patient(), patient()
    e1 = await wait(waitlist, p1, doc, clock.now + HOUR, start + DAY)
    e2 = await wait(waitlist, p2, doc, clock.now + HOUR, start + DAY)
    reply = await waitlist.handover.hot.release_redis(
        doc.user_id, slot, start, start + 50 * MIN, mode="slot", ref="", flag="", due=False,
        now=clock.now,
    )  # fmt: skip
    assert (reply.outcome, reply.entry) == ("held", e1)
    assert (await stored_slot(booking_store, doc, slot))["status"] == "open"  # never recorded
    booking2 = BookingService(booking_settings(), booking_store, booking_redis,
                              FakeAccounts(booking_store), clock=clock)  # fmt: skip
    waitlist2 = WaitlistService(booking_settings(), booking_store, booking_redis,
                                FakeAccounts(booking_store), booking2, clock=clock)  # fmt: skip
    assert await hold_of(booking_redis, doc, slot) == ("held", e1)
    await waitlist2.reindex([doc.user_id])
    assert await waitlist2.sweep_once() == 0
    clock.advance(waitlist2.hold_ms)
    assert await waitlist2.sweep_once() == 1
    assert await hold_of(booking_redis, doc, slot) == ("held", e2)
    data = await stored_slot(booking_store, doc, slot)
    assert (data["status"], data["hold_entry_id"]) == ("held", e2)
    # Killed again mid-hand-over, and this time Redis is lost as well: the store's state wins.
    await waitlist2.decline(p2, e2)
    assert (await stored_slot(booking_store, doc, slot))["status"] == "open"
    p3 = patient()
    e3 = await wait(waitlist2, p3, doc, clock.now + HOUR, start + DAY)
    reply = await waitlist2.handover.hot.release_redis(
        doc.user_id, slot, start, start + 50 * MIN, mode="slot", ref="", flag="", due=False,
        now=clock.now,
    )  # fmt: skip
    assert (reply.outcome, reply.entry) == ("held", e3)
    await booking_redis.flushdb()
    await booking2.rebuild_doctor(doc.user_id)
    assert await hold_of(booking_redis, doc, slot) == ("open", None)
    assert (await stored_slot(booking_store, doc, slot))["status"] == "open"
    assert (await waitlist2.list_own(p3)).items[0].offer is None


@pytest.mark.parametrize("waiting", [10, 10_000])
async def test_hand_over_cost_does_not_grow_with_the_waitlist(
    redis_server: RedisServer, tmp_path: Any, waiting: int
) -> None:
    """The release script's own commands for one hand-over are the same for 10 and 10,000
    waiting patients (the window index, not a scan of the list)."""
    redis = Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{BOOKING_DB}")
    await redis.flushdb()
    store = FlakyStore(await SQLiteStore.open(tmp_path / "s.sqlite3"))
    clock = Clock()
    booking = BookingService(booking_settings(), store, redis, FakeAccounts(store), clock=clock)
    waitlist = WaitlistService(
        booking_settings(), store, redis, FakeAccounts(store), booking, clock=clock
    )
    try:
        doc = doctor()
        start = clock.now + 3 * HOUR
        (slot,) = await slots_of(booking, doc, [(start, start + 50 * MIN)])
        await waitlist.hydrate(doc.user_id)
        await _many_entries(waitlist, doc, waiting, clock.now + HOUR, start + DAY)
        await redis.config_resetstat()
        await waitlist.release(doc.user_id, slot, start, start + 50 * MIN, mode="slot")
        stats = await redis.info("commandstats")
        inner = sum(
            int(v["calls"])
            for k, v in stats.items()
            if k.removeprefix("cmdstat_") in ("zrange", "hget", "hexists", "sismember")
        )
        assert inner <= 4, stats
    finally:
        await redis.flushdb()
        await redis.aclose()
        await store.inner.close()


async def _many_entries(
    waitlist: WaitlistService, doc: Principal, n: int, start: int, end: int
) -> None:
    """``n`` entries of distinct patients, stored and loaded through the rebuild script (the
    same state POST /v1/waitlist builds, without n round trips)."""
    entries = [
        Entry(
            id=f"E{i:025d}",
            doctor_id=doc.user_id,
            patient_id=f"P{i:025d}",
            start=start,
            end=end,
            created_at=start - HOUR + i,
            seat=0,
        )
        for i in range(n)
    ]
    await waitlist.ctx.store.put_many([st.entry_item(e) for e in entries])
    await waitlist.hydrate(doc.user_id, force=True)
