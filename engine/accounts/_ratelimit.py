"""Failed-login limits per account (and per trusted device) and per client address, in Redis.

Per account, each attempt first *reserves* a place in the account's gate, atomically (one Lua
script on one key, so no two replicas race) and is refused with ``RateLimited`` before the password
is checked while the gate is closed: of 100 simultaneous guesses at an account limited to 5, at
most 5 reach the password check. A success clears the gate.

The gate is a growing delay, not a hard lock (OWASP, "slow down, don't lock out"): the first
``limit - 1`` attempts pass freely, the ``limit``-th closes the gate for ``delay`` seconds,
and each attempt let through after that closes it for twice as long as the one before (``30
s, 60 s, 2 min ...``, at most ``window``). Refused attempts change nothing, so a flood cannot
lengthen the wait. The gate is forgotten ``window`` seconds after its last delay ends.

Whose gate: an attempt that carries a valid *device token* of the account
(:mod:`engine.accounts._devices`: a signed token a client got from an earlier successful
login) reserves in that device's own gate; every other attempt in the account's gate for
unknown clients. So anyone who knows a doctor's public CRM and UF can slow down guessing at
that account from unknown clients, but not lock the doctor out of the devices the doctor
already logged in from (OWASP's device cookies).

Per address, only failures count: a wrong password adds one (``failed``), a correct one adds
nothing, so any number of good logins in flight from one address (a proxy, a clinic's NAT, a
load test) is never refused by the address limit. The address's count is read when the
password check is about to run (``check_address``, called once the hash permit is held), so
at most the limit plus the checks already running (``hash_concurrency`` per process) get past
it while failures are still being counted. IPv6 addresses count by their /64 network
(:func:`address_group`): one host usually holds a whole /64, and could otherwise take a new
address per guess.

These keys belong to no doctor, so no multi-key script and no hash tag. Account identifiers are
hashed before they become key names: no e-mail or CPF in Redis.

Degraded mode: while Redis does not answer, the same gates and counters are kept in this
process's memory (``_LocalCounters``, bounded), so login keeps working from the store and a
guesser is still limited, per replica instead of across all of them. Counts made meanwhile
are not carried into Redis when it returns: the window simply starts again there.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import math
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from engine import keys
from engine.errors import Invalid, RateLimited, Unauthenticated

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from redis.asyncio import Redis

log = logging.getLogger(__name__)


class _LocalCounters:
    """Fixed-window counters in memory, the limiter's stand-in while Redis is down.

    Bounded: past ``max_keys`` live windows, expired ones are dropped, and if all are live the
    oldest half goes (a flood of new addresses cannot grow the process). Not shared between
    processes: each replica limits on its own.
    """

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self._counts: dict[str, tuple[int, float]] = {}
        self._gates: dict[str, tuple[int, float, float]] = {}
        """key → (attempts, the gate opens at, forgotten at)."""
        self._max = max_keys
        self._clock = clock

    def incr(self, key: str, window: int) -> tuple[int, int]:
        """Add one to ``key``'s window (opened now if none is live): (count, seconds left)."""
        now = self._clock()
        count, until = self._counts.get(key, (0, 0.0))
        if until <= now:
            count, until = 0, now + window
            self._make_room(now)
        self._counts[key] = (count + 1, until)
        return count + 1, math.ceil(until - now)

    def get(self, key: str) -> tuple[int, int]:
        """(count, seconds left) of ``key``'s live window, (0, 0) when it has none."""
        now = self._clock()
        count, until = self._counts.get(key, (0, 0.0))
        return (count, math.ceil(until - now)) if until > now else (0, 0)

    def delete(self, key: str) -> None:
        self._counts.pop(key, None)
        self._gates.pop(key, None)

    def gate(self, key: str, limit: int, delay: float, window: float) -> float:
        """``GATE_SCRIPT`` in memory: 0 when this attempt may pass (and is counted), else
        the seconds until the gate opens."""
        now = self._clock()
        count, opens, forget = self._gates.get(key, (0, 0.0, 0.0))
        if forget <= now:
            count, opens = 0, 0.0
        if now < opens:
            return opens - now
        count += 1
        wait = _delay(count, limit, delay, window)
        if len(self._gates) >= self._max:
            self._gates = {k: v for k, v in self._gates.items() if v[2] > now}
            if len(self._gates) >= self._max:
                keep = sorted(self._gates.items(), key=lambda kv: kv[1][2])
                self._gates = dict(keep[len(keep) // 2 :])
        self._gates[key] = (count, now + wait, now + wait + window)
        return 0.0

    def _make_room(self, now: float) -> None:
        if len(self._counts) < self._max:
            return
        self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        if len(self._counts) >= self._max:
            keep = sorted(self._counts.items(), key=lambda kv: kv[1][1])[len(self._counts) // 2 :]
            self._counts = dict(keep)


GATE_SCRIPT = """
-- KEYS[1]: the gate (a hash: n = attempts let through, opens = ms the gate opens at).
-- ARGV: limit, first delay (ms), window (ms). Server time, so every replica agrees.
-- Returns 0 when this attempt passes (and counts it), else the ms until the gate opens.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'n', 'opens')
local n = tonumber(state[1]) or 0
local opens = tonumber(state[2]) or 0
if now < opens then
  return opens - now
end
n = n + 1
local limit, delay, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = 0
if n >= limit then
  wait = math.min(window, delay * 2 ^ math.min(n - limit, 40))
end
redis.call('HSET', KEYS[1], 'n', n, 'opens', now + wait)
redis.call('PEXPIRE', KEYS[1], math.floor(wait + window))
return 0
"""

DELAY_SECONDS = 30.0
"""The first wait once an account's (or a device's) limit is reached; doubled after each
attempt let through after it, up to the window."""


def _delay(count: int, limit: int, delay: float, window: float) -> float:
    """The wait after the ``count``-th attempt (the Lua script's rule, in seconds)."""
    if count < limit:
        return 0.0
    return float(min(window, delay * 2 ** min(count - limit, 40)))


def address_group(address: str) -> str:
    """The unit an address is limited by: an IPv4 address itself, an IPv6 address's /64
    network (an IPv4-mapped one: its IPv4 address); anything else as it is."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def account_key(identifier: str) -> str:
    """A stable, non-reversible name for an account identifier (user id, e-mail, CRM/UF)."""
    return hashlib.sha256(identifier.encode()).hexdigest()[:32]


class LoginLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        account_limit: int,
        address_limit: int,
        window_seconds: int,
        delay_seconds: float = DELAY_SECONDS,
    ) -> None:
        self._redis = redis
        self.account_limit = account_limit
        self.address_limit = address_limit
        self.window = window_seconds
        self.delay = min(delay_seconds, window_seconds)
        self._local = _LocalCounters()
        self._gate = redis.register_script(GATE_SCRIPT)

    async def reserve(self, account: str) -> None:
        """Count this attempt in ``account``'s gate (an account reference, or a trusted
        device's: ``device:<id>``); ``RateLimited`` (``too_many_attempts``, with the seconds
        until the gate opens) while it is closed. Call before checking the password."""
        key = keys.login_failures_account(account_key(account))
        limit, delay, window = self.account_limit, self.delay, self.window
        try:
            wait = int(await self._gate(keys=[key], args=[limit, int(delay * 1000), window * 1000]))
            seconds = wait / 1000
        except RedisError:
            _degraded()
            seconds = self._local.gate(key, limit, delay, window)
        if seconds > 0:
            raise _limited(math.ceil(seconds))

    async def check_address(self, address: str) -> None:
        """``RateLimited`` if ``address`` (its group: an IPv6 /64) has reached its limit of
        failures in this window."""
        key = keys.login_failures_address(address_group(address))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.ttl(key)
                count, ttl = await pipe.execute()
        except RedisError:
            _degraded()
            count, ttl = self._local.get(key)
        if count is not None and int(count) >= self.address_limit:
            raise _limited(int(ttl))

    async def attempt(self, account: str, address: str) -> None:
        """``reserve`` then ``check_address``: for checks that take no hash permit (codes)."""
        await self.reserve(account)
        await self.check_address(address)

    @contextlib.asynccontextmanager
    async def counting_failure(self, address: str) -> AsyncIterator[None]:
        """A wrong credential (``Unauthenticated`` or ``Invalid``) raised inside counts one failure
        on the address."""
        try:
            yield
        except (Unauthenticated, Invalid):
            await self.failed(address)
            raise

    async def failed(self, address: str) -> None:
        """A wrong password (or unknown account): one more failure for the address's group."""
        key = keys.login_failures_address(address_group(address))
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self.window, nx=True)
                await pipe.execute()
        except RedisError:
            _degraded()
            self._local.incr(key, self.window)

    async def succeeded(self, account: str) -> None:
        """The attempt was good: forget the failures in ``account``'s gate."""
        key = keys.login_failures_account(account_key(account))
        self._local.delete(key)
        try:
            await self._redis.delete(key)
        except RedisError:
            _degraded()


def _limited(ttl: int) -> RateLimited:
    return RateLimited(
        "too many failed login attempts; try again later",
        code="too_many_attempts",
        retry_after=max(1, ttl),
    )


def _degraded() -> None:
    log.warning("redis does not answer: failed-login limits counted in this process only")
