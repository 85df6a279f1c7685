"""Durable layout of the waitlist (single table, see :mod:`engine.store`):

==========================  ============================  =================================
pk                          sk                            what
==========================  ============================  =================================
``DOC#<doctor>``            ``WAIT#<created>#<entry>``    the entry (window, offer, passed
                                                          slots); in FCFS order
``USER#<patient>``          ``WAIT#<seat>``               guard and index: seat 0..limit-1
                                                          names the entry (created
                                                          ``absent``: the limit holds under
                                                          concurrency)
``DOC#<doctor>``            ``SLOT#<start>#<slot>``       the slot (booking's item): status
                                                          ``held`` with ``hold_entry_id``,
                                                          ``patient_id``, ``hold_expires_at``
==========================  ============================  =================================

``<created>`` is epoch ms, zero-padded to 13 digits. A slot item is ``held`` for an entry
exactly when that entry's ``offer`` names it: both are written in one transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.store import Delete, Item, Put
from engine.store import keys as store_keys

if TYPE_CHECKING:
    from engine.waitlist._model import Entry

doctor_pk = store_keys.doctor_pk
user_pk = store_keys.user_pk
slot_sk = store_keys.slot_sk
PREFIX = store_keys.WAITLIST_PREFIX
entry_sk = store_keys.waitlist_entry_sk
seat_sk = store_keys.waitlist_seat_sk


def entry_item(entry: Entry) -> Item:
    return Item(
        pk=doctor_pk(entry.doctor_id), sk=entry_sk(entry.created_at, entry.id), data=entry.to_data()
    )


def seat_item(entry: Entry) -> Item:
    data = {
        "entry_id": entry.id,
        "doctor_id": entry.doctor_id,
        "created_at": entry.created_at,
        "from": entry.start,
        "to": entry.end,
    }
    return Item(pk=user_pk(entry.patient_id), sk=seat_sk(entry.seat), data=data)


def remove_ops(
    doctor_id: str, patient_id: str, entry_id: str, created_at: int, seat: int
) -> list[Delete]:
    """The entry and its seat, gone (fulfilled, deleted, window over). Unconditional."""
    return [
        Delete(pk=doctor_pk(doctor_id), sk=entry_sk(created_at, entry_id)),
        Delete(pk=user_pk(patient_id), sk=seat_sk(seat)),
    ]


def slot_put(
    doctor_id: str, slot_id: str, start: int, end: int, hold: tuple[str, str, int] | None
) -> Put:
    """Booking's slot item, ``open`` or ``held`` for (entry, patient, expiry)."""
    data: dict[str, object] = {
        "id": slot_id,
        "doctor_id": doctor_id,
        "start": start,
        "end": end,
        "status": "open",
    }
    if hold is not None:
        entry_id, patient_id, expires = hold
        data.update(
            status="held", hold_entry_id=entry_id, patient_id=patient_id, hold_expires_at=expires
        )
    item = Item(pk=doctor_pk(doctor_id), sk=slot_sk(start, slot_id), data=data)
    return Put(item=item, expect="present")
