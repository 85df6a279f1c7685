"""Durable state: the store port and its adapters (SQLite embedded, DynamoDB in production)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from engine.store._port import (
    MAX_TRANSACT,
    Check,
    ConditionFailed,
    Delete,
    Expect,
    Item,
    Op,
    Put,
    Store,
    StoreUnavailable,
)
from engine.store._sqlite import SQLiteStore


async def open_store(url: str) -> Store:
    """Open the store named by ``HEALTHMED_STORE_URL``: ``sqlite:///path`` or ``dynamodb://table``.

    ``dynamodb://<table>?create=true`` creates the table if it does not exist (development,
    tests); without it the table must exist, as in production where infrastructure owns it.
    """
    if url.startswith("sqlite:///"):
        return await SQLiteStore.open(Path(url.removeprefix("sqlite:///")))
    if url.startswith("dynamodb://"):
        from engine.store._dynamodb import DynamoDBStore

        table, _, query = url.removeprefix("dynamodb://").partition("?")
        options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
        if set(options) - {"create"}:
            raise ValueError(f"unsupported store url option in {url!r}: only create=true|false")
        create = options.get("create", ["false"])[-1].lower()
        if create not in ("true", "false", "1", "0"):
            raise ValueError(f"create must be true or false in {url!r}")
        return await DynamoDBStore.open(table, create=create in ("true", "1"))
    raise ValueError(f"unsupported store url: {url!r}")


__all__ = [
    "MAX_TRANSACT",
    "Check",
    "ConditionFailed",
    "Delete",
    "Expect",
    "Item",
    "Op",
    "Put",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "open_store",
]
