"""The one bounded cache: forgets everything at its bound, never grows past it."""

from __future__ import annotations

import pytest

from engine.cache import BoundedCache


def test_a_value_put_is_got_back_until_popped() -> None:
    """``put`` returns the value and ``get`` finds it; ``pop`` forgets it (twice is fine)."""
    cache: BoundedCache[str, int] = BoundedCache(3)
    assert cache.put("a", 1) == 1
    assert cache.get("a") == 1
    cache.pop("a")
    cache.pop("a")
    assert cache.get("a") is None
    assert "a" not in cache


def test_the_cache_never_holds_more_than_its_size() -> None:
    """Past ``size`` keys the cache is cleared before the new one goes in."""
    cache: BoundedCache[int, int] = BoundedCache(3)
    for key in range(3):
        cache.put(key, key)
    assert len(cache) == 3
    cache.put(3, 3)
    assert len(cache) == 1
    assert cache.get(3) == 3
    assert cache.get(0) is None
    for key in range(1000):
        cache.put(key, key)
        assert len(cache) <= 3


def test_overwriting_a_key_of_a_full_cache_keeps_the_others() -> None:
    """Replacing a value already held is not a new entry: nothing is forgotten."""
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)
    assert (cache.get("a"), cache.get("b")) == (3, 2)


def test_a_cache_of_no_entries_is_refused() -> None:
    """A size below one is a mistake, not a cache that never remembers."""
    with pytest.raises(ValueError, match="at least one"):
        BoundedCache(0)
