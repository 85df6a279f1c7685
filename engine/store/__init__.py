"""Durable state: the store port and its adapters (SQLite embedded, DynamoDB in production)."""

from __future__ import annotations

from pathlib import Path

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
    """Open the store named by ``HEALTHMED_STORE_URL``: ``sqlite:///path`` or ``dynamodb://table``."""
    if url.startswith("sqlite:///"):
        return await SQLiteStore.open(Path(url.removeprefix("sqlite:///")))
    if url.startswith("dynamodb://"):
        from engine.store._dynamodb import DynamoDBStore

        return await DynamoDBStore.open(url.removeprefix("dynamodb://"))
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
