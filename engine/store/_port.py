"""The durable store port: a single-table item store with conditional, all-or-nothing writes.

The shape is DynamoDB's single-table design, which the SQLite adapter reproduces:

* every item has a partition key ``pk`` and a sort key ``sk``; ``query`` reads one partition
  in ``sk`` order, optionally restricted to a prefix or a range;
* one global secondary index (``gsi1pk``, ``gsi1sk``) for the few lookups that cross
  partitions (doctors by kind, pending appointments by deadline);
* ``data`` holds the item's fields (JSON-compatible values);
* ``version`` is maintained by the store: 1 on first write, +1 on each overwrite. Writes can be
  conditioned on the item being absent, present, or at a given version (optimistic locking).

``transact`` applies up to ``MAX_TRANSACT`` operations atomically: either every condition holds
and every write lands, or nothing changes and ``ConditionFailed`` names the first failing
operation. Uniqueness (email, CPF, CRM/UF) is an ``absent`` condition on a guard item written in
the same transaction as the account, so it is enforced by the store, never by read-then-write.

Key layout: every ``pk`` and ``sk`` is built by :mod:`engine.store.keys`, whose docstring is
the table of them.

GSI1: ``gsi1pk="DOCTORS"`` lists doctors (directory rebuild); ``gsi1pk="PENDING"`` with
``gsi1sk=<deadline>`` lists undecided requests (rebuilding deadlines);
``gsi1pk="REVOCATIONS"`` with ``gsi1sk=<until ms>`` lists revocations to restore into a
rebuilt Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from engine.errors import Conflict, Unavailable

if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_TRANSACT = 100
"""DynamoDB's TransactWriteItems limit; both adapters enforce it so code stays portable."""

Expect = Literal["any", "absent", "present"] | int
"""Write condition: no condition, item must not exist, must exist, or must be at that version."""


class Item(msgspec.Struct, frozen=True, kw_only=True):
    pk: str
    sk: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    gsi1pk: str | None = None
    gsi1sk: str | None = None
    version: int = 0
    """Set by the store on read; ignored on write (the store computes the next version)."""


class Put(msgspec.Struct, frozen=True, kw_only=True):
    item: Item
    expect: Expect = "any"


class Delete(msgspec.Struct, frozen=True, kw_only=True):
    pk: str
    sk: str
    expect: Expect = "any"


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """A condition on an item that is not written (DynamoDB ConditionCheck)."""

    pk: str
    sk: str
    expect: Expect = "present"


Op = Put | Delete | Check


class ConditionFailed(Conflict):
    """A transaction's condition did not hold; nothing was written."""

    default_code = "condition_failed"

    def __init__(self, index: int, detail: str = "a store condition did not hold") -> None:
        super().__init__(detail, index=index)
        self.index = index


class StoreUnavailable(Unavailable):
    """The durable store did not answer or failed; the write did not happen (or is unknown)."""

    default_code = "store_unavailable"


class Store(Protocol):
    """The durable store. Every method may raise ``StoreUnavailable``."""

    async def get(self, pk: str, sk: str) -> Item | None: ...

    async def transact(self, ops: Sequence[Op]) -> None:
        """Apply ``ops`` atomically (at most ``MAX_TRANSACT``); ``ConditionFailed`` if any fails.

        Each (pk, sk) may appear at most once per transaction.
        """

    async def put(self, item: Item, expect: Expect = "any") -> None:
        """One conditional put; ``ConditionFailed(0)`` if the condition fails."""

    async def delete(self, pk: str, sk: str, expect: Expect = "any") -> None: ...

    async def put_many(self, items: Sequence[Item]) -> None:
        """Unconditional, idempotent puts of any number of items; not atomic as a whole."""

    async def query(
        self,
        pk: str,
        *,
        prefix: str = "",
        start: str | None = None,
        end: str | None = None,
        after: str | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[Item]:
        """Items of partition ``pk`` in ``sk`` order: ``sk`` starts with ``prefix``, lies in
        ``[start, end)`` when given, and is strictly past ``after`` (in the reading order)."""

    async def query_index(
        self,
        gsi1pk: str,
        *,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
    ) -> list[Item]:
        """Items whose ``gsi1pk`` matches, in ``gsi1sk`` order, ``gsi1sk`` in ``[start, end)``."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def check_items(items: Sequence[Item]) -> None:
    """Index keys come in pairs: DynamoDB cannot index an item with only one of them."""
    for item in items:
        if (item.gsi1pk is None) != (item.gsi1sk is None):
            raise ValueError(f"item {(item.pk, item.sk)} sets only one of gsi1pk and gsi1sk")


def check_ops(ops: Sequence[Op]) -> None:
    """Validate a transaction the way DynamoDB would, so both adapters reject the same input."""
    check_items([op.item for op in ops if isinstance(op, Put)])
    if len(ops) > MAX_TRANSACT:
        raise ValueError(f"a transaction holds at most {MAX_TRANSACT} operations, got {len(ops)}")
    seen: set[tuple[str, str]] = set()
    for op in ops:
        key = (op.item.pk, op.item.sk) if isinstance(op, Put) else (op.pk, op.sk)
        if key in seen:
            raise ValueError(f"item {key} appears twice in one transaction")
        seen.add(key)


def prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (None: there is none).

    Both stores order strings by UTF-8 bytes (DynamoDB, SQLite's binary collation), which is
    code point order, as Python does.
    """
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    code = ord(stripped[-1]) + 1
    if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be encoded; none is stored
        code = 0xE000
    return stripped[:-1] + chr(code)
