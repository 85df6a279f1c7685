"""Failed-login limits per account and per client address, in Redis.

Per account, each attempt first *reserves* a place in the account's counter, atomically
(``MULTI``: ``INCR`` then ``EXPIRE ... NX``, so the fixed window starts with the first attempt
and no counter is left without an expiry), and is refused with 429 past the limit before the
password is checked: of 100 simultaneous guesses at an account limited to 5, at most 5 reach
the password check. A success clears the account's counter.

Per address, only failures count: a wrong password adds one (``failed``), a correct one adds
nothing, so any number of good logins in flight from one address (a proxy, a clinic's NAT, a
load test) is never refused by the address limit. The address's count is read when the
password check is about to run (``check_address``, called once the hash permit is held), so
at most the limit plus the checks already running (``hash_concurrency`` per process) get past
it while failures are still being counted.

These keys belong to no doctor, so no multi-key script and no hash tag. Account identifiers are
hashed before they become key names: no e-mail or CPF in Redis.

Degraded mode: while Redis does not answer, the same counters are kept in this process's
memory (``_LocalCounters``, bounded), so login keeps working from the store and a guesser is
still limited, per replica instead of across all of them. Counts made meanwhile are not
carried into Redis when it returns: the window simply starts again there.
"""

from __future__ import annotations

import contextlib
import hashlib
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

    def _make_room(self, now: float) -> None:
        if len(self._counts) < self._max:
            return
        self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        if len(self._counts) >= self._max:
            keep = sorted(self._counts.items(), key=lambda kv: kv[1][1])[len(self._counts) // 2 :]
            self._counts = dict(keep)


def account_key(identifier: str) -> str:
    """A stable, non-reversible name for an account identifier (user id, e-mail, CRM/UF)."""
    return hashlib.sha256(identifier.encode()).hexdigest()[:32]


class LoginLimiter:
    def __init__(
        self, redis: Redis, *, account_limit: int, address_limit: int, window_seconds: int
    ) -> None:
        self._redis = redis
        self.account_limit = account_limit
        self.address_limit = address_limit
        self.window = window_seconds
        self._local = _LocalCounters()

    def _keys(self, account: str, address: str) -> tuple[str, str]:
        return (
            keys.login_failures_account(account_key(account)),
            keys.login_failures_address(address),
        )

    async def reserve(self, account: str) -> None:
        """Count this attempt against the account's limit; ``RateLimited``
        (``too_many_attempts``) past it. Call before checking the password."""
        key = keys.login_failures_account(account_key(account))
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self.window, nx=True)
                pipe.ttl(key)
                count, _, ttl = await pipe.execute()
        except RedisError:
            _degraded()
            count, ttl = self._local.incr(key, self.window)
        if int(count) > self.account_limit:
            raise _limited(int(ttl))

    async def check_address(self, address: str) -> None:
        """``RateLimited`` if ``address`` has reached its limit of failures in this window."""
        key = keys.login_failures_address(address)
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
        """A wrong credential (401 or 422) raised inside counts one failure on the address."""
        try:
            yield
        except (Unauthenticated, Invalid):
            await self.failed(address)
            raise

    async def failed(self, address: str) -> None:
        """A wrong password (or unknown account): one more failure for the address."""
        key = keys.login_failures_address(address)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self.window, nx=True)
                await pipe.execute()
        except RedisError:
            _degraded()
            self._local.incr(key, self.window)

    async def succeeded(self, account: str) -> None:
        """The attempt was good: forget the account's failures."""
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
