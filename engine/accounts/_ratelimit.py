"""Failed-login limits per account and per client address, in Redis.

Fixed windows: the first failure creates a counter that expires ``window`` seconds later; each
failure increments it. A login is refused with 429 *before* the password is checked while
either counter is at its limit, so a guesser learns nothing more once limited. A successful
login clears the account's counter (not the address's: one address guessing many accounts
stays limited).

Plain commands in a non-transactional pipeline: ``SET key 0 EX window NX`` then ``INCR`` (the
increment keeps the expiry). These keys belong to no doctor, so no script and no hash tag.
Account identifiers are hashed before they become key names: no e-mail or CPF in Redis.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from engine import keys
from engine.errors import RateLimited, Unavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis


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

    def _keys(self, account: str, address: str) -> tuple[str, str]:
        return (
            keys.login_failures_account(account_key(account)),
            keys.login_failures_address(address),
        )

    async def check(self, account: str, address: str) -> None:
        """``RateLimited`` (code ``too_many_attempts``) while either counter is at its limit."""
        acct_key, addr_key = self._keys(account, address)
        try:
            acct, addr = await self._redis.mget(acct_key, addr_key)
        except RedisError as exc:
            # Fail closed: without the counters a guesser would be unlimited.
            raise Unavailable("redis does not answer", code="redis_unavailable") from exc
        limited = [
            key
            for key, value, limit in (
                (acct_key, acct, self.account_limit),
                (addr_key, addr, self.address_limit),
            )
            if value is not None and int(value) >= limit
        ]
        if not limited:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in limited:
                pipe.ttl(key)
            ttls = await pipe.execute()
        retry_after = max(1, *(int(t) for t in ttls))
        raise RateLimited(
            "too many failed login attempts; try again later",
            code="too_many_attempts",
            retry_after=retry_after,
        )

    async def failed(self, account: str, address: str) -> None:
        acct_key, addr_key = self._keys(account, address)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in (acct_key, addr_key):
                pipe.set(key, 0, ex=self.window, nx=True)
                pipe.incr(key)
            await pipe.execute()

    async def succeeded(self, account: str) -> None:
        await self._redis.delete(keys.login_failures_account(account_key(account)))
