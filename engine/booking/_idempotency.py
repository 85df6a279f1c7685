"""``Idempotency-Key`` records of ``POST /v1/appointments``: durable in the store, cached in Redis.

A key's first outcome (the new appointment, or a deterministic refusal) is replayed for
``TTL_MS`` to the
same patient, whatever happens to Redis meanwhile:

* the store holds the record (``USER#<patient>`` / ``IDEM#<sha256 of the key>``: appointment
  id, slot id, the first outcome, until when it holds). A request's record is written in the same
  transaction as the request itself (:meth:`Reservations._store_request`), so no appointment exists
  without its record and no record without its appointment; a refusal's record is one put. Both are
  conditioned on the record being absent (or on the version of one that has lapsed), so of two
  attempts that raced through a lost Redis, the first stored wins and the other replays it;
* Redis holds the binding (``idem`` key: the appointment id the key maps to, so a retry while
  the first attempt is in flight reuses the same reservation) and a copy of the outcome
  (``idem-resp``). On a Redis miss the store is asked and the copy rebuilt from it (lazily:
  a flushed Redis costs one store read per key that is used again).

Lapsed records are overwritten when their key is used again; nothing else deletes them yet
(the store port has no TTL; a DynamoDB TTL attribute would be the way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from engine import errors
from engine.booking import _store as layout
from engine.booking._model import AppointmentView
from engine.errors import Conflict, EngineError, Invalid
from engine.store import Item, Put
from engine.store import keys as store_keys

if TYPE_CHECKING:
    from engine.store import Expect, Store

TTL_MS = 24 * 3600 * 1000
"""How long a key's first outcome is replayed."""
_KINDS: dict[str, type[EngineError]] = {
    kind.__name__: kind for kind in (errors.Forbidden, errors.NotFound, Conflict, Invalid)
}
"""The refusals that are a key's outcome (deterministic), by the name stored in its record; an
``Unavailable`` is not: the key may be retried."""
_NAMES = {kind: name for name, kind in _KINDS.items()}
_NOT_REPLAYED = (errors.PayloadTooLarge, errors.UnsupportedMedia)
_LEGACY_KINDS = {403: "Forbidden", 404: "NotFound", 409: "Conflict", 422: "Invalid"}
"""Records stored before the kind was named carry the HTTP status instead (they lapse within
``TTL_MS``)."""
_encoder = msgspec.json.Encoder()


def replayable_kind(exc: EngineError) -> str | None:
    """The name an error's outcome is stored under, or None if it is not a key's outcome."""
    if isinstance(exc, _NOT_REPLAYED):
        return None
    for cls in type(exc).__mro__:
        if cls in _NAMES:
            return _NAMES[cls]
    return None


class Outcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The first outcome of an ``Idempotency-Key``: the new appointment as JSON (``body``), or
    a refusal (``error``: its kind, with its ``code`` and ``detail``)."""

    body: str | None = None
    error: str = ""
    status: int = 0
    """Records before ``error`` existed: the refusal's HTTP status."""
    code: str = ""
    detail: str = ""

    def encode(self) -> bytes:
        return _encoder.encode(self)

    @classmethod
    def of_error(cls, exc: EngineError, kind: str) -> Outcome:
        return cls(error=kind, code=exc.code, detail=exc.detail)


_outcome_decoder = msgspec.json.Decoder(Outcome)
_view_decoder = msgspec.json.Decoder(AppointmentView)


def replay(raw: bytes | str) -> AppointmentView:
    """The remembered appointment, or raise the remembered refusal."""
    first = _outcome_decoder.decode(raw)
    if first.body is not None:
        return _view_decoder.decode(first.body)
    kind = first.error or _LEGACY_KINDS.get(first.status, "Conflict")
    raise _KINDS.get(kind, Conflict)(first.detail, code=first.code)


def check_key(key: str) -> None:
    if not 1 <= len(key) <= 200 or not key.isascii() or not key.isprintable():
        raise Invalid(
            "Idempotency-Key must be 1 to 200 printable ASCII characters",
            code="invalid_idempotency_key",
        )


def reused() -> Invalid:
    return Invalid(
        "this Idempotency-Key was already used for another slot", code="idempotency_key_reused"
    )


record_sk = store_keys.idempotency_sk


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """A key's durable record (the item's ``data``)."""

    appointment_id: str
    slot_id: str
    outcome: str
    """:class:`Outcome` as JSON."""
    expires_at: int
    """Epoch ms: replayed until then."""


class KeyUse(msgspec.Struct, frozen=True, kw_only=True):
    """One use of a key by a request: what its record write needs."""

    patient_id: str
    key: str
    slot_id: str
    now: int
    expect: Expect
    """``absent``, or the version of a lapsed record to overwrite."""

    def put(self, appointment_id: str, outcome: Outcome) -> Put:
        record = Record(
            appointment_id=appointment_id,
            slot_id=self.slot_id,
            outcome=outcome.encode().decode(),
            expires_at=self.now + TTL_MS,
        )
        item = Item(
            pk=layout.user_pk(self.patient_id),
            sk=record_sk(self.key),
            data=msgspec.to_builtins(record),
        )
        return Put(item=item, expect=self.expect)


async def load(store: Store, patient_id: str, key: str, now: int) -> tuple[Record | None, Expect]:
    """The key's record still in force (or None), and the condition a new record is written
    with: ``absent``, or the version of a lapsed one."""
    item = await store.get(layout.user_pk(patient_id), record_sk(key))
    if item is None:
        return None, "absent"
    record = msgspec.convert(item.data, Record)
    if record.expires_at <= now:
        return None, item.version
    return record, item.version


class Replayed(Exception):
    """Another attempt with this key stored its record first: replay it."""

    def __init__(self, record: Record) -> None:
        super().__init__("the Idempotency-Key already has an outcome")
        self.record = record


__all__ = [
    "TTL_MS",
    "KeyUse",
    "Outcome",
    "Record",
    "Replayed",
    "check_key",
    "load",
    "record_sk",
    "replay",
    "replayable_kind",
    "reused",
]
