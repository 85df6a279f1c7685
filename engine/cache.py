"""The one bounded cache: a dict that forgets everything once it holds ``size`` entries.

For per-process memos where a miss only costs a reload (profiles read on every booking, a
lock per doctor that only deduplicates rebuilds, pre-encoded frames): clearing at the bound
keeps memory flat under any number of keys at the price of one wave of misses, and costs
nothing per hit, unlike an LRU's bookkeeping. Not thread-safe; meant for one event loop.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    __slots__ = ("_items", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a bounded cache holds at least one entry")
        self.size = size
        self._items: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> V:
        """Remember ``value`` under ``key`` (first forgetting everything if full); returns it."""
        if key not in self._items and len(self._items) >= self.size:
            self._items.clear()
        self._items[key] = value
        return value

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
