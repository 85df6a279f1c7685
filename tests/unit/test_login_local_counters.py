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


def test_the_gate_waits_longer_after_each_attempt_instead_of_locking() -> None:
    """The in-process gate (Redis down): the first attempts pass, the limit-th closes it for
    the first delay, and each attempt let through after that doubles the wait, capped at the
    window; refused attempts do not lengthen it; it is forgotten a window after it opens."""
    clock = Clock()
    counters = _LocalCounters(clock=clock)
    assert [counters.gate("g", 3, 30, 900) for _ in range(3)] == [0, 0, 0]
    assert counters.gate("g", 3, 30, 900) == 30
    clock.now += 10
    assert counters.gate("g", 3, 30, 900) == 20  # refused: the wait is not lengthened
    waits = []
    for _ in range(7):
        clock.now += counters.gate("g", 3, 30, 900)
        assert counters.gate("g", 3, 30, 900) == 0
        waits.append(counters.gate("g", 3, 30, 900))
    assert waits == [60, 120, 240, 480, 900, 900, 900]
    clock.now += 900 + 900
    assert counters.gate("g", 3, 30, 900) == 0  # forgotten
    assert counters.gate("g", 3, 30, 900) == 0


def test_ipv6_addresses_are_limited_by_their_slash_64() -> None:
    """Every address of one /64 is one group; IPv4 (mapped or not) stays per address."""
    from engine.accounts._ratelimit import address_group

    assert address_group("2001:db8:1:2::1") == address_group("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert address_group("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_group("2001:db8:1:3::1") != address_group("2001:db8:1:2::1")
    assert address_group("::ffff:198.51.100.7") == "198.51.100.7"
    assert address_group("198.51.100.7") != address_group("198.51.100.8")
    assert address_group("unknown") == "unknown"


def test_device_tokens_are_bound_to_their_account_and_expire() -> None:
    """A device token names its device for the account it was issued for only; a tampered,
    foreign, expired or malformed one names nothing; renewing keeps the device."""
    from engine.accounts._devices import LIFETIME_SECONDS, DeviceTokens

    clock = Clock()
    tokens = DeviceTokens("s" * 64, clock=clock)
    token = tokens.issue("user-a")
    device = tokens.device(token, "user-a")
    assert device is not None
    assert "user-a" not in token
    assert tokens.device(token, "user-b") is None
    assert DeviceTokens("t" * 64, clock=clock).device(token, "user-a") is None
    head, _, mac = token.rpartition(".")
    assert tokens.device(f"{head}.{mac[::-1]}", "user-a") is None
    for junk in ("", "d1", "d1.x.y.z", "x" * 500, None):
        assert tokens.device(junk, "user-a") is None
    assert tokens.device(tokens.issue("user-a", device), "user-a") == device
    clock.now += LIFETIME_SECONDS + 1
    assert tokens.device(token, "user-a") is None
