"""The failed-login limiter's in-process stand-in for Redis: fixed windows, bounded size."""

from __future__ import annotations

from engine.accounts._ratelimit import _LocalCounters


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_window_counts_then_starts_again_after_it_ends() -> None:
    """Counts add up inside a window with the seconds left; after it, counting restarts."""
    clock = Clock()
    counters = _LocalCounters(clock=clock)
    assert counters.incr("k", 60) == (1, 60)
    clock.now += 20
    assert counters.incr("k", 60) == (2, 40)
    assert counters.get("k") == (2, 40)
    clock.now += 41
    assert counters.get("k") == (0, 0)
    assert counters.incr("k", 60) == (1, 60)
    counters.delete("k")
    assert counters.get("k") == (0, 0)


def test_a_flood_of_new_keys_never_grows_past_the_bound() -> None:
    """Past max_keys live windows the oldest half is dropped; the newest keys stay counted."""
    clock = Clock()
    counters = _LocalCounters(max_keys=100, clock=clock)
    for i in range(1000):
        clock.now += 0.001
        counters.incr(f"address-{i}", 900)
        assert len(counters._counts) <= 100
    assert counters.get("address-999")[0] == 1
    assert counters.get("address-0") == (0, 0)
