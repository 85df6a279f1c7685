"""Cursor pagination over one partition, newest first, with an in-memory filter.

A cursor is the base64url of the last returned sort key; it only ever moves within the caller's
own partition and prefix, so a forged cursor can skip items but never reach another partition.
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


def check_limit(limit: int) -> int:
    if not 1 <= limit <= LIMIT_MAX:
        raise Invalid(f"limit must be 1-{LIMIT_MAX}", code="invalid_limit", field="limit")
    return limit


def encode_cursor(sk: str) -> str:
    return base64.urlsafe_b64encode(sk.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str | None, prefix: str) -> str | None:
    if cursor is None or cursor == "":
        return None
    try:
        sk = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        sk = ""
    if not sk.startswith(prefix) or len(sk) > 200:
        raise Invalid("invalid cursor", code="invalid_cursor", field="cursor")
    return sk


async def scan(
    store: Store,
    pk: str,
    prefix: str,
    *,
    cursor: str | None,
    limit: int,
    keep: Callable[[Item], bool] | None = None,
) -> tuple[list[Item], str | None]:
    """Up to ``limit`` items of ``pk`` under ``prefix`` (newest first) that ``keep`` accepts,
    and the cursor of the next page (``None`` when nothing more matches)."""
    check_limit(limit)
    after = decode_cursor(cursor, prefix)
    out: list[Item] = []
    while True:
        batch = await store.query(pk, prefix=prefix, after=after, limit=_BATCH, descending=True)
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
