"""Revoked access tokens, held in memory in every process and kept current over pub/sub.

Every authenticated request checks that its token was not revoked (logout, erasure, refresh
reuse). Asking Redis costs a round trip per request, yet revocations are few and rare, so each
process keeps all of those still in force in memory:

* a revocation is written to the store first (durable, restored on a rebuild), then to
  Redis: a plain key (read by the fallback below), a member of the sorted set
  ``hm:revocations`` (score: until when it matters, ms), and a message on the channel
  ``hm:revocations``;
* each process subscribes to that channel and, after every (re)subscription, loads the whole
  sorted set, so nothing published while it was disconnected is missed;
* while the subscription is not live, :meth:`AccountService.check_not_revoked` reads Redis
  instead (one MGET), so a process never trusts a copy it cannot keep current; with Redis down
  too (degraded mode) it reads the store's copy, where a revocation made meanwhile is written
  first. Each (re)subscription also reloads the store's revocations, so one made while Redis
  was away is known once the copy is live again.

A revocation reaches the other processes within the pub/sub delay (milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING, Any

from engine import keys
from engine.errors import Unauthenticated
from engine.timeutil import now_ms

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from redis.asyncio import Redis

    from engine.principal import Principal

log = logging.getLogger("healthmed.accounts")

CHANNEL = keys.revocations()
_PRUNE_EVERY_MS = 60_000


def member(kind: str, subject: str, value: str) -> str:
    """The wire and sorted-set form of a revocation: ``jti|<jti>|1``, ``sid|<session>|1``
    (every token of one login) or ``before|<user id>|<ms>`` (tokens of that user issued at
    or before ``ms`` are revoked)."""
    return f"{kind}|{subject}|{value}"


class Revocations:
    def __init__(
        self,
        redis: Redis,
        durable: Callable[[], Awaitable[list[tuple[str, int]]]] | None = None,
    ) -> None:
        self._redis = redis
        self._durable = durable
        self._jti: dict[str, int] = {}
        self._sid: dict[str, int] = {}
        self._before: dict[str, tuple[int, int]] = {}
        self._pruned = 0
        self.live = False
        """True while the subscription is live and the copy is current."""
        self.version = 0
        """Counts revocations added: long-lived sessions (websockets) recheck when it moves."""

    def add(self, entry: str, until: int) -> None:
        self.version += 1
        kind, _, rest = entry.partition("|")
        subject, _, value = rest.rpartition("|")
        if kind == "jti":
            self._jti[subject] = max(until, self._jti.get(subject, 0))
        elif kind == "sid":
            self._sid[subject] = max(until, self._sid.get(subject, 0))
        elif kind == "before":
            before, old_until = self._before.get(subject, (0, 0))
            self._before[subject] = (max(before, int(value)), max(until, old_until))

    def check(self, principal: Principal) -> None:
        """``Unauthenticated`` (``token_revoked``) if the token is revoked. Memory only."""
        if self.revoked(principal):
            raise Unauthenticated("token revoked", code="token_revoked")

    def revoked(self, principal: Principal) -> bool:
        """Whether the token is revoked, by the copy in memory (current only while ``live``)."""
        now = now_ms()
        if now - self._pruned > _PRUNE_EVERY_MS:
            self._prune(now)
        until = self._jti.get(principal.jti)
        if until is not None and until > now:
            return True
        if principal.session and self._sid.get(principal.session, 0) > now:
            return True
        before = self._before.get(principal.user_id)
        return before is not None and before[1] > now and principal.issued_at * 1000 <= before[0]

    def _prune(self, now: int) -> None:
        self._pruned = now
        self._jti = {k: u for k, u in self._jti.items() if u > now}
        self._sid = {k: u for k, u in self._sid.items() if u > now}
        self._before = {k: v for k, v in self._before.items() if v[1] > now}

    async def _load(self) -> None:
        now = now_ms()
        await self._redis.zremrangebyscore(CHANNEL, "-inf", now)
        pairs: list[Any] = await self._redis.zrangebyscore(CHANNEL, now, "+inf", withscores=True)
        for raw, score in pairs:
            self.add(raw.decode() if isinstance(raw, bytes) else str(raw), int(score))
        if self._durable is not None:
            for entry, until in await self._durable():
                self.add(entry, until)

    async def run(self) -> None:
        """Follow revocations until cancelled, resubscribing (and reloading) after failures."""
        delay = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await self._redis.ping()  # on a cluster: (re)learn the topology first
                await pubsub.subscribe(CHANNEL)
                await self._load()
                self.live = True
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        entry, _, until = bytes(message["data"]).decode().rpartition("@")
                        self.add(entry, int(until))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("revocations: subscription lost (%s); retrying", type(exc).__name__)
            finally:
                self.live = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
            delay = min(delay * 2, 5.0)

    async def publish(self, entry: str, until: int) -> None:
        """Add a revocation to the shared set and tell every process (this one at once)."""
        self.add(entry, until)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(CHANNEL, {entry: until})
            # PUBLISH as a command: redis-py's cluster pipeline blocks its publish() method.
            pipe.execute_command("PUBLISH", CHANNEL, f"{entry}@{until}")
            await pipe.execute()
