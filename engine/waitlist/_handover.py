"""The hand-over: every freed slot goes through :meth:`Handover.release` (release.lua), whose
decision is recorded in the store in one transaction (the slot item ``held`` or ``open``
together with the entries' ``offer`` fields), then ``waitlist.offered`` goes out on the
holder's topic (and an e-mail through the outbox). A process that dies between the script and
the store write leaves Redis holding the slot with an expiry in the holds set, so the hold
lapses and passes on; a store write that fails invalidates the doctor, whose slots and
waitlist are rebuilt from the store on next use.

Lapsed holds are swept like decision deadlines (:class:`engine.sweep_index.SweepIndex`, as
booking's expiry sweep): each doctor's holds sorted set (entry -> expiry) under its tag, a
global index of doctors by earliest expiry (plain commands), and ``engine/sweep.lua`` claiming
due holds with a lease (a hold that already ended leaves the set). Every replica re-indexes at
start and every ``REINDEX_SECONDS`` (a hold whose index entry a crash lost).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from engine import keys
from engine.errors import Conflict, Unavailable
from engine.realtime import events
from engine.store import ConditionFailed, Put, StoreUnavailable
from engine.store import keys as store_keys
from engine.sweep_index import SweepIndex
from engine.timeutil import to_rfc3339
from engine.waitlist import _store as layout
from engine.waitlist._context import LAPSE_LEASE_MS
from engine.waitlist._model import Entry, Offer, OfferedEvent, OfferSlot
from engine.waitlist._scripts import Freed, How

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.store import Op
    from engine.waitlist._context import WaitlistContext
    from engine.waitlist._hot import HotWaitlist
    from engine.waitlist._scripts import ReleaseReply

log = logging.getLogger("healthmed.waitlist")


def passed_with(entry: Entry, offer: Offer, now: int) -> list[str]:
    """The entry's passed slots plus this one (slots already started are dropped)."""
    kept = [s for s in entry.passed if s != offer.slot_id]
    return [*kept[-49:], offer.slot_id] if offer.start > now else kept[-50:]


class Handover:
    """Release, record, publish; the holder's booking; the lapse sweep."""

    def __init__(self, ctx: WaitlistContext, hot: HotWaitlist) -> None:
        self.ctx = ctx
        self.hot = hot
        self.index = SweepIndex(ctx.redis, keys.waitlist_sweep_index(), keys.waitlist_holds)

    async def release(
        self,
        doctor_id: str,
        slot_id: str,
        start: int,
        end: int,
        *,
        mode: Freed,
        ref: str = "",
        undo: bool = False,
        now: int | None = None,
        slot_known_open: bool = True,
        hand_over: bool = True,
    ) -> str:
        """Free a slot (booking's cancel, refuse, expiry, rollback: ``Freed.APPOINTMENT`` with
        the appointment id as ``ref``; a new or edited open slot: ``Freed.SLOT``) and hand it
        to the next entry or open it; without ``hand_over`` it only opens (time off deletes it
        next). The outcome is recorded in the store; if that fails the doctor is rebuilt from
        the store on next use (the caller's own change is already stored). Returns
        release.lua's outcome. Idempotent."""
        now = self.ctx.clock() if now is None else now
        reply = await self.hot.release_redis(
            doctor_id,
            slot_id,
            start,
            end,
            mode=mode,
            ref=ref,
            flag=How.UNDO if undo else (How.HAND_OVER if hand_over else How.OPEN),
            due=False,
            now=now,
        )
        await self._record(
            doctor_id,
            slot_id,
            start,
            end,
            reply,
            now,
            [],
            slot_known_open=slot_known_open,
            raise_on_failure=False,
        )
        return reply.outcome

    async def pass_on(
        self, doctor_id: str, entry_id: str, offer: Offer, ops: list[Op], *, flag: How, due: bool
    ) -> ReleaseReply:
        """Release the entry's hold on ``offer``'s slot and store ``ops`` with the outcome (the
        entry may be gone already: a hold outlives its entry until passed on)."""
        now = self.ctx.clock()
        reply = await self.hot.release_redis(
            doctor_id,
            offer.slot_id,
            offer.start,
            offer.end,
            mode=Freed.HOLD,
            ref=entry_id,
            flag=flag,
            due=due,
            now=now,
        )
        if reply.outcome == "not_due":
            return reply
        await self._record(
            doctor_id,
            offer.slot_id,
            offer.start,
            offer.end,
            reply,
            now,
            ops,
            slot_known_open=False,
            raise_on_failure=True,
        )
        return reply

    async def _record(
        self,
        doctor_id: str,
        slot_id: str,
        start: int,
        end: int,
        reply: ReleaseReply,
        now: int,
        ops: list[Op],
        *,
        slot_known_open: bool,
        raise_on_failure: bool,
    ) -> None:
        """Store what release.lua decided (with ``ops``), then publish the offer."""
        pairs: list[tuple[str, bytes]] = []
        if reply.outcome == "held":
            start, end = reply.start, reply.end  # Redis's own, should the slot have moved
            holder = await self.ctx.store.get(
                layout.doctor_pk(doctor_id), layout.entry_sk(reply.seq, reply.entry)
            )
            if holder is None:  # Redis had an entry the store does not: rebuild the doctor
                await self.hot.invalidate(doctor_id, slot_id)
                if ops:
                    await self._transact(doctor_id, slot_id, ops, raise_on_failure)
                return
            offer = Offer(slot_id=slot_id, start=start, end=end, expires_at=reply.expires)
            entry = msgspec.structs.replace(Entry.from_data(holder.data), offer=offer)
            ops = [
                *ops,
                Put(item=layout.entry_item(entry), expect=holder.version),
                layout.slot_put(
                    doctor_id, slot_id, start, end, (entry.id, entry.patient_id, offer.expires_at)
                ),
                *self._offer_mail(entry, offer, now),
            ]
            data = OfferedEvent(
                entry_id=entry.id,
                slot=OfferSlot(id=slot_id, start=to_rfc3339(start), end=to_rfc3339(end)),
                hold_expires_at=to_rfc3339(offer.expires_at),
            )
            pairs += events.frames(
                [events.patient_appointments_topic(entry.patient_id)],
                "waitlist.offered",
                data,
                now,
            )
            if reply.previous == "open":  # a new or edited slot: it was published open
                pairs.append(events.slot_frame(doctor_id, slot_id, start, end, "taken", now))
        elif reply.outcome in ("opened", "freed") and not slot_known_open:
            ops = [*ops, layout.slot_put(doctor_id, slot_id, start, end, None)]
        if not ops:
            return
        if not await self._transact(doctor_id, slot_id, ops, raise_on_failure):
            return
        # The holder is told first: the sweep index and the e-mail are not on the hand-over's
        # path (a hold the index misses is found by the next re-index; woken earlier, the
        # outbox's drain would run its store writes and renders between these steps).
        if pairs:
            try:
                await events.publish(self.ctx.redis, pairs)
            except Exception:
                log.warning("waitlist event publication failed", exc_info=True)
        if reply.outcome == "held":
            await self.hot.index_hold(doctor_id, reply.expires)
            if self.ctx.outbox is not None:
                self.ctx.outbox.wake()

    async def _transact(
        self, doctor_id: str, slot_id: str, ops: list[Op], raise_on_failure: bool
    ) -> bool:
        try:
            await self.ctx.store.transact(ops)
        except (StoreUnavailable, ConditionFailed) as exc:
            log.warning(
                "waitlist outcome of slot %s not stored; rebuilding doctor %s",
                slot_id,
                doctor_id,
                exc_info=True,
            )
            await self.hot.invalidate(doctor_id, slot_id)
            if raise_on_failure:
                if isinstance(exc, ConditionFailed):
                    raise Conflict(
                        "the waitlist changed meanwhile; retry", code="waitlist_changed"
                    ) from exc
                raise
            return False
        return True

    def _offer_mail(self, entry: Entry, offer: Offer, now: int) -> list[Op]:
        if self.ctx.outbox is None:
            return []
        context = {
            "entry_id": entry.id,
            "doctor_id": entry.doctor_id,
            "patient_id": entry.patient_id,
            "slot_id": offer.slot_id,
            "start_ms": offer.start,
            "end_ms": offer.end,
            "hold_expires_ms": offer.expires_at,
            "role": "patient",
        }
        ops: list[Op] = list(
            self.ctx.outbox.put_ops(
                "waitlist.offered",
                entry.patient_id,
                context,
                key=f"{entry.id}:{offer.slot_id}:{offer.expires_at}",
                at=now,
            )
        )
        return ops

    async def fulfilment(self, doctor_id: str, entry_id: str) -> list[Op]:
        """Store ops removing ``entry_id`` (its holder booked the held slot), for booking to
        append to the request's transaction; none if the entry is already gone."""
        value, seq = await self.hot.hot_entry(doctor_id, entry_id)
        if value is None or seq is None:
            return []
        _, _, patient_id, seat = value.split(":")
        entry_op, seat_op = layout.remove_ops(doctor_id, patient_id, entry_id, seq, int(seat))
        guard = await self.ctx.store.get(seat_op.pk, seat_op.sk)
        if guard is None or guard.data.get("entry_id") != entry_id:
            return [entry_op]  # the seat already serves another entry of the patient
        return [entry_op, msgspec.structs.replace(seat_op, expect=guard.version)]

    async def fulfilled(self, doctor_id: str, entry_id: str, start: int, end: int) -> None:
        """Redis side of a fulfilment (after the request was stored): the entry leaves."""
        value, seq = await self.hot.hot_entry(doctor_id, entry_id)
        if value is None or seq is None:
            return
        w_start, w_end, patient_id, seat = value.split(":")
        entry = Entry(
            id=entry_id,
            doctor_id=doctor_id,
            patient_id=patient_id,
            start=int(w_start),
            end=int(w_end),
            created_at=seq,
            seat=int(seat),
        )
        try:
            await self.hot.forget(entry)
        except Unavailable:
            await self.hot.invalidate(doctor_id, "")

    async def sweep_once(self, *, max_doctors: int = 100, max_items: int = 50) -> int:
        """Pass on every lapsed hold of up to ``max_doctors`` doctors; the number passed on."""
        now = self.ctx.clock()
        passed = 0
        for doctor_id in await self.index.due(now, max_doctors):
            lapsed = await self.hot.eval(
                self.ctx.scripts.lapse,
                doctor_id,
                [
                    keys.waitlist_holds(doctor_id),
                    keys.waitlist_offers(doctor_id),
                    keys.waitlist_hydrated(doctor_id),
                ],
                [now, LAPSE_LEASE_MS, max_items, "drop"],
            )
            for entry_id, slot_id in lapsed.claimed:
                try:
                    if await self._lapse(doctor_id, entry_id, slot_id):
                        passed += 1
                except Exception:
                    log.warning(
                        "lapse of hold %s failed; retried after the lease", entry_id, exc_info=True
                    )
            await self.index.reset(doctor_id)
        return passed

    async def _lapse(self, doctor_id: str, entry_id: str, slot_id: str) -> bool:
        _, seq = await self.hot.hot_entry(doctor_id, entry_id)
        found = await self.hot.slot_hold(doctor_id, slot_id)
        if found is None:
            await self.ctx.redis.zrem(keys.waitlist_holds(doctor_id), entry_id)
            return False
        offer, _ = found
        ops: list[Op] = []
        if seq is not None:
            item = await self.ctx.store.get(
                layout.doctor_pk(doctor_id), layout.entry_sk(seq, entry_id)
            )
            if item is not None:
                entry = Entry.from_data(item.data)
                lapsed = msgspec.structs.replace(
                    entry, offer=None, passed=passed_with(entry, offer, self.ctx.clock())
                )
                ops.append(Put(item=layout.entry_item(lapsed), expect=item.version))
        reply = await self.pass_on(doctor_id, entry_id, offer, ops, flag=How.PASS, due=True)
        return reply.outcome in ("held", "opened", "freed")

    async def reindex(self, doctor_ids: Sequence[str]) -> int:
        """Put every doctor with holds in the sweep index at its earliest expiry."""
        return await self.index.reindex(doctor_ids)

    async def _doctor_ids(self) -> list[str]:
        """Every registered doctor, from the store's doctors index."""
        doctors = await self.ctx.store.query_index("DOCTORS")
        return sorted(
            {str(item.data.get("id") or store_keys.user_id_of(item.pk)) for item in doctors}
        )

    async def run_sweeper(self) -> None:
        """Pass on lapsed holds every sweep interval until cancelled; re-index at start and
        every ``REINDEX_SECONDS`` (a hold whose index entry a crash lost)."""
        await self.index.run(self.sweep_once, self._doctor_ids, self.ctx.sweep_interval, log)
