"""Holds join the hypothesis model of the slot and appointment life cycle: the booking machine's
rules (create, edit, delete, book, accept, refuse, cancel, expire, FLUSHDB) with a waitlist
wired in, plus wait, leave, decline, lapse and booking by the holder, on a real redis-server and
SQLite, checked after every step against a plain Python model of first come, first served.

Invariants: the agenda, the appointments and the entries match the model; a slot is never both
open and held, never held for two entries, and Redis and the store agree on every hold."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule, run_state_machine_as_test

from engine import keys
from engine.errors import Conflict, Invalid, NotFound
from engine.timeutil import to_rfc3339
from engine.waitlist import CreateEntry, WaitlistService
from tests.integration.conftest import BOOKING_DB, FakeAccounts, booking_settings
from tests.integration.test_booking_state_machine import HOUR, LEAD, MIN, BookingMachine, MAppt
from tests.support import RedisServer

HOLD = 20 * MIN
SEEN: Counter[str] = Counter()
"""What the runs exercised (the test checks that holds were made, booked, declined, lapsed)."""


@dataclass
class MEntry:
    patient: int
    start: int
    end: int
    seq: int
    offer: str | None = None
    expires: int = 0
    passed: set[str] = field(default_factory=set)


class WaitlistMachine(BookingMachine):
    def __init__(self) -> None:
        super().__init__()
        self.waitlist = WaitlistService(
            booking_settings(waitlist_hold_seconds=HOLD // 1000), self.store, self.redis,
            FakeAccounts(self.store), self.booking, clock=self.clock,
        )  # fmt: skip
        self.booking.use_waitlist(self.waitlist)
        self.entries: dict[str, MEntry] = {}
        self.seq = 0

    # Moves and time off (issue 15) free slots in ways this model does not follow yet: their
    # rules are left out here (plain methods are no rules); the booking machine runs them.
    def reschedule(self, i: int, j: int) -> None:  # type: ignore[override]
        raise NotImplementedError

    def accept_then_move(self, i: int, j: int) -> None:  # type: ignore[override]
        raise NotImplementedError

    def time_off(self, k: int, hours: int, cancel: bool) -> None:  # type: ignore[override]
        raise NotImplementedError

    def end_time_off(self, i: int) -> None:  # type: ignore[override]
        raise NotImplementedError

    # --- the model's hand-over ----------------------------------------------------------------
    def decide(self, slot_id: str) -> None:
        """What release.lua must do with a freed slot: the earliest covering entry without an
        offer that did not pass it holds it, until min(now + HOLD, start - LEAD); else open."""
        slot = self.model.slots[slot_id]
        slot.status, slot.appt = "open", None
        now = self.clock.now
        expires = min(now + HOLD, slot.start - LEAD)
        if slot.start <= now or expires <= now:
            return
        for entry_id, e in sorted(self.entries.items(), key=lambda kv: (kv[1].seq, kv[0])):
            if (
                e.offer is None and slot_id not in e.passed
                and e.start <= slot.start and e.end >= slot.end
            ):  # fmt: skip
                e.offer, e.expires = slot_id, expires
                slot.status, slot.appt = "held", None
                SEEN["held"] += 1
                return

    def free(self, appt_id: str, status: str) -> None:
        appt = self.model.appts[appt_id]
        appt.status = status
        self.decide(appt.slot)

    def holder(self, slot_id: str) -> tuple[str, MEntry] | None:
        for entry_id, e in self.entries.items():
            if e.offer == slot_id:
                return entry_id, e
        return None

    # --- rules changed by holds ---------------------------------------------------------------
    @rule(k=st.integers(0, 40), minutes=st.sampled_from([30, 60, 90]))
    def create(self, k: int, minutes: int) -> None:
        before = set(self.model.slots)
        super().create(k, minutes)
        for slot_id in set(self.model.slots) - before:
            self.decide(slot_id)

    @precondition(lambda self: self.model.slots)
    @rule(i=st.integers(0, 100), k=st.integers(0, 40), minutes=st.sampled_from([30, 60]))
    def edit(self, i: int, k: int, minutes: int) -> None:
        """An edited open slot goes through the release script too (it may become held)."""
        slot_id = self.pick(self.model.slots, i)
        slot = self.model.slots[slot_id]
        start = self.base + k * 30 * MIN
        end = start + minutes * MIN
        _, err = self.attempt(
            self.booking.update_slot(self.doctor, slot_id, to_rfc3339(start), to_rfc3339(end))
        )
        if start <= self.clock.now:
            assert isinstance(err, Invalid), err
        elif slot.status != "open":
            assert isinstance(err, Conflict), err
            assert err.code == "slot_not_open"
        elif self.overlaps(start, end, skip=slot_id):
            assert isinstance(err, Conflict), err
            assert err.code == "slot_overlap"
        else:
            assert err is None, err
            slot.start, slot.end = start, end
            self.decide(slot_id)

    @precondition(lambda self: self.model.slots)
    @rule(i=st.integers(0, 100), p=st.integers(0, 2))
    def book(self, i: int, p: int) -> None:
        slot_id = self.pick(self.model.slots, i)
        slot = self.model.slots[slot_id]
        held = self.holder(slot_id)
        if slot.status != "held":
            super().book(i, p)
            return
        assert held is not None
        now = self.clock.now
        body, err = self.attempt(self.booking.request_appointment(self.patients[p], slot_id))
        entry_id, entry = held
        mine = [
            a for a in self.model.appts.values()
            if a.patient == p and a.status in ("requested", "confirmed") and a.end > now
        ]  # fmt: skip
        if entry.patient != p or entry.expires <= now:
            assert isinstance(err, Conflict), err
            assert err.code == "slot_unavailable"
        elif any(a.start < slot.end and slot.start < a.end for a in mine):
            assert isinstance(err, Conflict), err
            assert err.code == "patient_overlap"
        else:
            assert err is None, err
            appt_id = body.id
            deadline = min(now + self.booking.ctx.ttl_ms, slot.start - LEAD)
            self.model.appts[appt_id] = MAppt(slot_id, p, slot.start, slot.end, deadline)
            slot.status, slot.appt = "requested", appt_id
            del self.entries[entry_id]  # fulfilled
            SEEN["booked by the holder"] += 1

    @rule(minutes=st.sampled_from([30, 121]))
    def expire(self, minutes: int) -> None:
        """Advance time, sweep requests (each freed slot decided in deadline order), then
        lapsed holds (in expiry order, each passed on at once)."""
        self.clock.advance(minutes * MIN)
        expired = self.run(self.booking.expire_due())
        due = sorted(
            (a.deadline, i) for i, a in self.model.appts.items()
            if a.status == "requested" and a.deadline <= self.clock.now
        )  # fmt: skip
        assert expired == len(due)
        for _, appt_id in due:
            self.free(appt_id, "expired")
        lapsed = sorted(
            (e.expires, i) for i, e in self.entries.items()
            if e.offer is not None and e.expires <= self.clock.now
        )  # fmt: skip
        passed = self.run(self.waitlist.sweep_once())
        for _, entry_id in lapsed:
            entry = self.entries[entry_id]
            slot_id = entry.offer
            assert slot_id is not None
            entry.offer = None
            entry.passed.add(slot_id)
            self.decide(slot_id)
            SEEN["lapsed"] += 1
        assert passed == len(lapsed)

    def offered(self) -> dict[str, MEntry]:
        return {i: e for i, e in self.entries.items() if e.offer is not None}

    @precondition(lambda self: self.offered())
    @rule(i=st.integers(0, 100))
    def holder_books(self, i: int) -> None:
        """The holder of some held slot books it (the rule above, aimed at a hold)."""
        entry = self.offered()[self.pick(self.offered(), i)]
        assert entry.offer is not None
        self.book(sorted(self.model.slots).index(entry.offer), entry.patient)

    @precondition(lambda self: self.offered())
    @rule(i=st.integers(0, 100))
    def holder_declines(self, i: int) -> None:
        """The holder of some held slot declines it (the decline rule, aimed at a hold)."""
        self.decline(sorted(self.entries).index(self.pick(self.offered(), i)))

    # --- waitlist rules -----------------------------------------------------------------------
    @rule(p=st.integers(0, 2), k=st.integers(0, 30), hours=st.sampled_from([2, 30, 30]))
    def wait(self, p: int, k: int, hours: int) -> None:
        start = self.base + k * 30 * MIN - HOUR
        end = start + hours * HOUR
        body = CreateEntry(
            doctor_id=self.doctor.user_id, from_=to_rfc3339(start), to=to_rfc3339(end)
        )
        view, err = self.attempt(self.waitlist.create(self.patients[p], body))
        now = self.clock.now
        mine = [e for e in self.entries.values() if e.patient == p and e.end > now]
        if start <= now:
            assert isinstance(err, Invalid), err
        elif any(e.start < end and start < e.end for e in mine):
            assert isinstance(err, Conflict), err
            assert err.code == "already_waiting"
        else:
            assert err is None, err
            self.seq += 1
            self.entries[view.id] = MEntry(p, start, end, self.seq)
            assert view.position == len(self.entries)

    @precondition(lambda self: self.entries)
    @rule(i=st.integers(0, 100))
    def leave(self, i: int) -> None:
        entry_id = self.pick(self.entries, i)
        entry = self.entries[entry_id]
        _, err = self.attempt(self.waitlist.delete(self.patients[entry.patient], entry_id))
        if entry.end <= self.clock.now:
            return  # over: may already be gone
        assert err is None, err
        del self.entries[entry_id]
        if entry.offer is not None:
            self.decide(entry.offer)

    @precondition(lambda self: self.entries)
    @rule(i=st.integers(0, 100))
    def decline(self, i: int) -> None:
        entry_id = self.pick(self.entries, i)
        entry = self.entries[entry_id]
        _, err = self.attempt(self.waitlist.decline(self.patients[entry.patient], entry_id))
        if entry.end <= self.clock.now:
            assert isinstance(err, (NotFound, Conflict)), err
            return
        if entry.offer is None:
            assert isinstance(err, Conflict), err
            assert err.code == "no_offer"
            return
        assert err is None, err
        slot_id = entry.offer
        entry.offer = None
        entry.passed.add(slot_id)
        self.decide(slot_id)
        SEEN["declined"] += 1

    # --- invariants ---------------------------------------------------------------------------
    @invariant()
    def holds_are_single_and_agree(self) -> None:
        """Never open and held, never two holders; Redis and the store agree on each hold."""
        d = self.doctor.user_id
        offers: dict[str, str] = {}
        for entry_id, e in self.entries.items():
            if e.offer is not None:
                assert e.offer not in offers, (e.offer, offers)
                offers[e.offer] = entry_id
        stored = self.run(self.store.query(f"DOC#{d}", prefix="SLOT#"))
        for item in stored:
            slot_id = item.data["id"]
            if item.data["status"] == "held":
                assert offers.get(slot_id) == item.data["hold_entry_id"], slot_id
            else:
                assert slot_id not in offers, slot_id
        if not self.run(self.redis.exists(keys.waitlist_hydrated(d))):
            return
        open_ids = {
            m.decode() for m in self.run(self.redis.zrange(keys.doctor_open_slots(d), 0, -1))
        }
        assert not open_ids & set(offers), open_ids & set(offers)
        hot = {
            k.decode(): v.decode()
            for k, v in self.run(self.redis.hgetall(keys.waitlist_offers(d))).items()
        }
        assert hot == {entry: slot for slot, entry in offers.items()}

    @invariant()
    def entries_match_the_model(self) -> None:
        now = self.clock.now
        for p, who in enumerate(self.patients):
            listed = self.run(self.waitlist.list_own(who)).items
            expected = {i for i, e in self.entries.items() if e.patient == p and e.end > now}
            assert {v.id for v in listed} == expected
            for v in listed:
                e = self.entries[v.id]
                assert (v.offer.slot.id if v.offer else None) == e.offer, v.id
        for entry_id in [i for i, e in self.entries.items() if e.end <= now]:
            del self.entries[entry_id]  # over: removed when its patient looks (above)


@pytest.mark.slow
def test_holds_life_cycle_matches_the_model(redis_server: RedisServer) -> None:
    """Any sequence of slot, appointment and waitlist operations, time jumps and Redis flushes
    leaves the service in the model's state: first come first served, one holder per slot."""
    WaitlistMachine.redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{BOOKING_DB}"
    run_state_machine_as_test(
        WaitlistMachine,
        settings=settings(
            max_examples=int(os.environ.get("BOOKING_SM_EXAMPLES", "100")),
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    # Which paths a random run reaches is chance (one CI run made 27 holds and no booking by a
    # holder); the scripted run below walks every one of them on purpose.
    assert SEEN["held"] > 0, SEEN


@pytest.mark.slow
def test_a_scripted_run_holds_books_declines_and_lapses(redis_server: RedisServer) -> None:
    """The machine's own rules, in an order that takes each hold path once: a freed slot held
    for the first in line and booked by its holder, one declined (nobody else covers it: it
    opens), one left to lapse twice (passed on by the sweep to the next in line, then opened);
    every invariant checked after every step."""
    WaitlistMachine.redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{BOOKING_DB}"
    machine = WaitlistMachine()
    assert len(machine.invariants) >= 6  # the booking machine's four and the waitlist's two
    before = Counter(SEEN)
    steps = [
        lambda: machine.wait(p=0, k=2, hours=30),  # patient 0 first in line
        lambda: machine.wait(p=1, k=2, hours=30),  # patient 1 second
        lambda: machine.create(k=4, minutes=60),  # held for patient 0
        lambda: machine.holder_books(i=0),  # booked by its holder
        lambda: machine.create(k=8, minutes=60),  # held for patient 1
        lambda: machine.holder_declines(i=0),  # declined: nobody else waits, so it opens
        lambda: machine.wait(p=2, k=2, hours=30),
        lambda: machine.create(k=12, minutes=60),  # held for patient 1, still first in line
        lambda: machine.expire(minutes=30),  # past the 20-minute hold: lapses, passes to 2
        lambda: machine.expire(minutes=30),  # patient 2's hold lapses too: the slot opens
    ]
    try:
        for step in steps:
            step()
            for invariant in machine.invariants:  # every @invariant, as hypothesis runs them
                invariant.function(machine)
    finally:
        machine.teardown()
    seen = Counter(SEEN)
    seen.subtract(before)
    assert seen["held"] == 4, seen
    assert seen["booked by the holder"] == 1, seen
    assert seen["declined"] == 1, seen
    assert seen["lapsed"] == 2, seen
