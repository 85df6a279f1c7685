"""Read caches with a staleness bound: an answer served from one is at most ``max_age`` old.

A :class:`FreshCache` holds the results of reads (a search page, an agenda) for a fraction of
a second, so a burst of identical reads costs one trip to Redis instead of one each:

* **Bounded staleness.** An entry's age runs from the moment its read *began* (the read sees
  Redis as it was then or later), and an entry is served only while that age is under
  ``max_age``. A caller therefore never gets an answer older than ``max_age`` seconds, also
  when it joins a read already in flight (joined only while that read's age is under the
  bound). ``valid`` lets the owner refuse an entry sooner (e.g. a slot it shows has closed
  since).
* **One read per key at a time.** Concurrent misses of one key share the read in flight
  (``asyncio.shield``: a caller that is cancelled does not cancel the read the others wait
  on); a failed read is not kept, every waiter gets its exception.
* **Writes through the owner are seen at once.** :meth:`clear` drops every entry and every
  read in flight (a read that began before the write is never stored), so a process sees its
  own writes; other processes see them within ``max_age``. :meth:`forget` does the same for
  one key (a write that changed only that key's answer).
* **Bounded size.** The entries are an :class:`engine.cache.BoundedCache` (the one bounded
  cache): past ``size`` keys it starts over.

Not for answers that decide anything: a booking is still decided by its Lua script, whatever
a cached page showed.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Generic, TypeVar

from engine.cache import BoundedCache

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable

K = TypeVar("K", bound="Hashable")
V = TypeVar("V")


class FreshCache(Generic[K, V]):
    def __init__(
        self, max_age: float, size: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age = max_age
        self._clock = clock
        self._entries: BoundedCache[K, tuple[float, V]] = BoundedCache(size)
        self._reads: dict[K, tuple[float, asyncio.Future[V]]] = {}

    async def get(
        self,
        key: K,
        read: Callable[[], Awaitable[V]],
        valid: Callable[[V], bool] | None = None,
    ) -> V:
        """The value of ``key``: a fresh entry, the read in flight, or ``await read()``."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            began, value = entry
            if now - began < self.max_age and (valid is None or valid(value)):
                return value
            self._entries.pop(key)
        pending = self._reads.get(key)
        if pending is not None and now - pending[0] < self.max_age:
            return await asyncio.shield(pending[1])
        task = asyncio.ensure_future(read())
        self._reads[key] = (now, task)
        task.add_done_callback(lambda done: self._settle(key, now, done))
        return await asyncio.shield(task)

    def _settle(self, key: K, began: float, done: asyncio.Future[V]) -> None:
        pending = self._reads.get(key)
        if pending is None or pending[1] is not done:
            if not done.cancelled():
                done.exception()  # retrieved: its waiters raise it
            return  # cleared (or superseded) while in flight: not stored
        del self._reads[key]
        if done.cancelled() or done.exception() is not None:
            return
        self._entries.put(key, (began, done.result()))

    def clear(self) -> None:
        """Forget every entry and every read in flight (after a write through the owner)."""
        self._entries.clear()
        self._reads.clear()

    def forget(self, key: K) -> None:
        """Forget ``key``'s entry and its read in flight (after a write through the owner that
        changed only that key): the next caller reads again."""
        self._entries.pop(key)
        self._reads.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["FreshCache"]
