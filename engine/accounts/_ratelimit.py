"""Failed-login limits per account and per client address, in Redis.

Each login attempt first *reserves* a place in both counters, atomically (``MULTI``: ``INCR``
then ``EXPIRE ... NX``, so a counter's fixed window starts with its first attempt and no
counter is ever left without an expiry). If either count is then over its limit the attempt
is refused with 429 before the password is checked. Reserving before verifying is what makes
the limit hold under concurrency: of 100 simultaneous guesses at an account limited to 5, at
most 5 reach the password check.

The counters count failures: a successful login clears the account's counter and gives back
its place in the address's counter (so a proxy carrying many good logins is never limited;
one address guessing many accounts stays limited).

These keys belong to no doctor, so no multi-key script and no hash tag. Account identifiers are
hashed before they become key names: no e-mail or CPF in Redis.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from engine import keys
from engine.errors import RateLimited, Unavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

# KEYS[1] counter  returns the new count, or nothing when the counter has expired already
_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('DECR', KEYS[1])
end
return false
"""


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
        self._give_back = redis.register_script(_GIVE_BACK)

    def _keys(self, account: str, address: str) -> tuple[str, str]:
        return (
            keys.login_failures_account(account_key(account)),
            keys.login_failures_address(address),
        )

    async def reserve(self, account: str, address: str) -> None:
        """Count this attempt against both limits; ``RateLimited`` (``too_many_attempts``)
        if either is exceeded. Call before checking the password."""
        acct_key, addr_key = self._keys(account, address)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key in (acct_key, addr_key):
                    pipe.incr(key)
                    pipe.expire(key, self.window, nx=True)
                    pipe.ttl(key)
                acct, _, acct_ttl, addr, _, addr_ttl = await pipe.execute()
        except RedisError as exc:
            # Fail closed: without the counters a guesser would be unlimited.
            raise Unavailable("redis does not answer", code="redis_unavailable") from exc
        waits = [
            int(ttl)
            for count, limit, ttl in (
                (acct, self.account_limit, acct_ttl),
                (addr, self.address_limit, addr_ttl),
            )
            if int(count) > limit
        ]
        if waits:
            raise RateLimited(
                "too many failed login attempts; try again later",
                code="too_many_attempts",
                retry_after=max(1, *waits),
            )

    async def succeeded(self, account: str, address: str) -> None:
        """The attempt was good: forget the account's failures, give the address its place back."""
        acct_key, addr_key = self._keys(account, address)
        await self._redis.delete(acct_key)
        await self._give_back(keys=[addr_key])
