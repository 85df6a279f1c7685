"""The one pager: page sizes, opaque cursors, and cursor pagination over a store partition.

A cursor is base64url without padding. :func:`scan` pages over one partition: its cursor is the
last returned sort key, which only ever moves within the caller's own partition and prefix, so
a forged cursor can skip items but never reach another partition. Callers whose cursor holds
more than a sort key (the directory's search state, a waitlist position) encode their own bytes
with :func:`encode_cursor` and read them back with :func:`decode_cursor`.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from engine.errors import Invalid

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.store import Item, Store

LIMIT_DEFAULT = 20
LIMIT_MAX = 100
_BATCH = 100
_SORT_KEY_MAX = 200


def check_limit(limit: int) -> int:
    """``limit`` if it is a page size (1 to 100), else Invalid ``invalid_limit``."""
    if not 1 <= limit <= LIMIT_MAX:
        raise Invalid(f"limit must be 1-{LIMIT_MAX}", code="invalid_limit", field="limit")
    return limit


def invalid_cursor(detail: str = "invalid cursor") -> Invalid:
    return Invalid(detail, code="invalid_cursor", field="cursor")


def encode_cursor(raw: bytes | str) -> str:
    """``raw`` as an opaque cursor (base64url, no padding)."""
    data = raw.encode() if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> bytes:
    """The bytes of a cursor made by :func:`encode_cursor`; Invalid ``invalid_cursor`` if it is
    not base64url."""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise invalid_cursor() from None


def after_key(cursor: str | None, prefix: str) -> str | None:
    """The sort key a :func:`scan` cursor resumes after (None for the first page); Invalid
    ``invalid_cursor`` unless it is a sort key under ``prefix``."""
    if cursor is None or cursor == "":
        return None
    try:
        sk = decode_cursor(cursor).decode()
    except (Invalid, UnicodeDecodeError):
        sk = ""
    if not sk.startswith(prefix) or len(sk) > _SORT_KEY_MAX:
        raise invalid_cursor()
    return sk


async def scan(
    store: Store,
    pk: str,
    prefix: str,
    *,
    cursor: str | None,
    limit: int,
    keep: Callable[[Item], bool] | None = None,
    start: str | None = None,
    end: str | None = None,
    descending: bool = True,
) -> tuple[list[Item], str | None]:
    """Up to ``limit`` items of ``pk`` under ``prefix`` (newest first unless ``descending`` is
    False; sort keys in ``[start, end)`` when given) that ``keep`` accepts, and the cursor of
    the next page (``None`` when nothing more matches)."""
    check_limit(limit)
    after = after_key(cursor, prefix)
    out: list[Item] = []
    while True:
        batch = await store.query(
            pk,
            prefix=prefix,
            start=start,
            end=end,
            after=after,
            limit=_BATCH,
            descending=descending,
        )
        for item in batch:
            if keep is None or keep(item):
                if len(out) == limit:
                    return out, encode_cursor(out[-1].sk)
                out.append(item)
        if len(batch) < _BATCH:
            return out, None
        after = batch[-1].sk


async def scan_all(store: Store, pk: str, prefix: str) -> list[Item]:
    """Every item of ``pk`` under ``prefix``, in batches (export, erasure, access checks)."""
    out: list[Item] = []
    after: str | None = None
    while True:
        batch = await store.query(pk, prefix=prefix, after=after, limit=_BATCH)
        out.extend(batch)
        if len(batch) < _BATCH:
            return out
        after = batch[-1].sk
