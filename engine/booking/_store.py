"""Durable layout of booking (single table; the keys are built by :mod:`engine.store.keys`):

==========================  ===========================  ==================================
pk                          sk                           what
==========================  ===========================  ==================================
``DOC#<doctor>``            ``SLOT#<start>#<slot>``      the slot: interval and status
``DOC#<doctor>``            ``HOLD#<slot>``              guard: an active appointment holds
                                                         the slot (-> its id); a confirmed
                                                         one's pending move holds its new slot
                                                         too (``status: "move"``)
``DOC#<doctor>``            ``OFF#<start>#<id>``         a time-off range (slot creations
                                                         skip it)
``APPT#<id>``               ``APPT``                     the appointment; while ``requested``
                                                         also ``gsi1pk="PENDING"``,
                                                         ``gsi1sk=<deadline>#<id>``
``APPT#<id>``               ``RATING``                   the patient's rating (once)
``USER#<id>``               ``APPT#<start>#<id>``        copy of the appointment per
                                                         participant (listing, export)
``USER#<id>``               ``IDEM#<sha256 of key>``     a patient's ``Idempotency-Key``:
                                                         its first outcome, for 24 h
                                                         (:mod:`._idempotency`)
==========================  ===========================  ==================================

``<start>`` and ``<deadline>`` are epoch ms, zero-padded to 13 digits so they sort as text.

The store's own guarantee against double booking: ``HOLD#<slot>`` is created with an
``absent`` condition in the same transaction that stores a request, and deleted only in the
transaction that moves that appointment out of ``requested``/``confirmed``. So at most one
active appointment per slot exists in the store, whatever Redis says. Each transition is
also conditioned on the appointment's version (and accept on the hold's version).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.store import Check, Delete, Item, Put
from engine.store import keys as store_keys
from engine.store.keys import APPT_SK as APPT_SK
from engine.store.keys import RATING_SK as RATING_SK
from engine.store.keys import appt_pk as appt_pk
from engine.store.keys import doctor_pk as doctor_pk
from engine.store.keys import hold_sk as hold_sk
from engine.store.keys import index_sk as index_sk
from engine.store.keys import off_sk as off_sk
from engine.store.keys import slot_sk as slot_sk
from engine.store.keys import user_pk as user_pk

OFF_PREFIX = store_keys.TIME_OFF_PREFIX

if TYPE_CHECKING:
    from engine.booking._model import Appointment, Slot
    from engine.store import Expect, Op


def slot_item(slot: Slot) -> Item:
    return Item(pk=doctor_pk(slot.doctor_id), sk=slot_sk(slot.start, slot.id), data=slot.to_data())


def hold_check_absent(doctor_id: str, slot_id: str) -> Check:
    return Check(pk=doctor_pk(doctor_id), sk=hold_sk(slot_id), expect="absent")


def appointment_ops(appt: Appointment, expect: Expect) -> list[Op]:
    """The appointment item (at ``expect``) and its two index copies."""
    data = appt.to_data()
    pending = appt.status == "requested"
    main = Item(
        pk=appt_pk(appt.id),
        sk=APPT_SK,
        data=data,
        gsi1pk="PENDING" if pending else None,
        gsi1sk=f"{appt.deadline:013d}#{appt.id}" if pending else None,
    )
    sk = index_sk(appt.start, appt.id)
    return [
        Put(item=main, expect=expect),
        Put(item=Item(pk=user_pk(appt.patient_id), sk=sk, data=data)),
        Put(item=Item(pk=user_pk(appt.doctor_id), sk=sk, data=data)),
    ]


def transition_ops(appt: Appointment, expect: Expect, hold: Op, slot: Slot) -> list[Op]:
    """An appointment confirmed or ended (at ``expect``): its item and index copies, the change
    to its ``HOLD`` guard, and its slot's new state (the slot must be there)."""
    main, *index = appointment_ops(appt, expect)
    return [main, hold, Put(item=slot_item(slot), expect="present"), *index]


def hold_put(appt: Appointment, expect: Expect) -> Put:
    item = Item(
        pk=doctor_pk(appt.doctor_id),
        sk=hold_sk(appt.slot_id),
        data={"appointment_id": appt.id, "status": appt.status},
    )
    return Put(item=item, expect=expect)


def hold_delete(appt: Appointment) -> Delete:
    return Delete(pk=doctor_pk(appt.doctor_id), sk=hold_sk(appt.slot_id), expect="present")


def moved_ops(moved: Appointment, before: Appointment, expect: Expect) -> list[Op]:
    """The appointment moved to a new slot (at ``expect``): its item and index copies under
    the new start, the copies under the old start deleted."""
    old_sk = index_sk(before.start, before.id)
    return [
        *appointment_ops(moved, expect),
        Delete(pk=user_pk(before.patient_id), sk=old_sk),
        Delete(pk=user_pk(before.doctor_id), sk=old_sk),
    ]


def move_hold_put(appt: Appointment, slot_id: str, status: str, expect: Expect) -> Put:
    """The ``HOLD`` guard of a move's new slot: the appointment holds it (``status`` "move"
    while pending, the appointment's own once the move is applied)."""
    item = Item(
        pk=doctor_pk(appt.doctor_id),
        sk=hold_sk(slot_id),
        data={"appointment_id": appt.id, "status": status},
    )
    return Put(item=item, expect=expect)


def move_hold_delete(appt: Appointment, slot_id: str) -> Delete:
    return Delete(pk=doctor_pk(appt.doctor_id), sk=hold_sk(slot_id), expect="present")
