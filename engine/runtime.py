"""The engine: every service wired to its clients, opened and closed as one unit.

``Engine.start(settings)`` opens Redis (real or in-process), the durable store and the blob
store, rebuilds Redis from the store when it is empty, and starts the background tasks (the
expiry sweeper, the outbox drainer). ``close()`` stops them and closes every client. The
gateway opens one Engine in its lifespan; a plain asyncio script can do the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

from engine import keys
from engine.accounts import AccountService
from engine.accounts.tokens import AccessTokens
from engine.booking import BookingService
from engine.errors import Unavailable
from engine.notifications import Notifications
from engine.realtime import Hub
from engine.records import RecordService, open_blob_store
from engine.redis_client import connect_redis
from engine.store import open_store
from engine.waitlist import WaitlistService

if TYPE_CHECKING:
    from collections.abc import Awaitable, Coroutine

    from redis.asyncio import Redis

    from engine.config import Settings
    from engine.directory import DirectoryService
    from engine.principal import Principal
    from engine.store import Store

log = logging.getLogger("healthmed.engine")

READY_TIMEOUT_SECONDS = 2.0
NEEDS_REDIS = ("booking", "availability", "search", "realtime")
"""What answers ``Unavailable`` while Redis is down (README "Degraded mode"): reservations, slot
edits and agendas, the directory, websockets. Accounts, appointments and decisions, records and
shares need only the store."""


class PrivacyPart(Protocol):
    """A service holding personal data: it exports it and erases it (LGPD)."""

    async def export_user(self, principal: Principal) -> dict[str, Any]:
        """Top-level sections of the export document this service contributes."""

    async def erase_user(self, principal: Principal) -> None:
        """Delete or anonymise what this service holds of the user; idempotent."""


class Engine:
    def __init__(self, settings: Settings, redis: Redis, store: Store) -> None:
        self.settings = settings
        self.redis = redis
        self.store = store
        self.tokens = AccessTokens(settings)
        self.accounts = AccountService(settings, store, redis, self.tokens)
        self.directory: DirectoryService = self.accounts.directory  # one search cache
        # Relays events from Redis pub/sub to this process's websockets; started with the
        # background tasks (Engine.start(background=True)), closed in close().
        self.hub = Hub(redis, queue_size=settings.ws_queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        # Erasure runs in this order; accounts last, so a failure midway leaves a user who can
        # still log in and retry, never an anonymised account with live appointments.
        self.privacy_parts: list[PrivacyPart] = [self.accounts]
        # Health records: the blob store and key wrapper open in start(), close in close().
        self.records = RecordService(settings, store, self.accounts, open_blobs=open_blob_store)
        self.accounts.use_sealer(self.records.sealer)  # TOTP secrets: the records' key wrapper
        self.privacy_parts.insert(0, self.records)
        # Booking: slots and appointments (erasure cancels the user's future appointments).
        # Notifications: the outbox every change writes to, drained by every replica; the
        # user's messages are exported and erased after booking's erasure queued its own.
        self.notifications = Notifications(settings, store, self.accounts)
        self.booking = BookingService(
            settings, store, redis, self.accounts, outbox=self.notifications.outbox
        )
        self.privacy_parts.insert(0, self.booking)
        # Waitlist: entries and holds of freed slots, under each doctor's hash tag.
        self.waitlist = WaitlistService(
            settings, store, redis, self.accounts, self.booking,
            outbox=self.notifications.outbox,
        )  # fmt: skip
        self.booking.use_waitlist(self.waitlist)
        self.privacy_parts.insert(0, self.waitlist)
        self.notifications.attach(
            self.booking, {"appointment.reminder": self.booking.reminder_current}
        )
        self.privacy_parts.insert(-1, self.notifications)
        self.accounts.resets.outbox = self.notifications.outbox  # the reset e-mail
        self.notifications.outbox.openers["password.reset"] = self.accounts.resets.open_context

    @classmethod
    async def start(cls, settings: Settings, *, background: bool = True) -> Engine:
        # The data directory holds the database, the encrypted blobs, generated secrets and
        # the mail folder: the server's user only (0700), whoever created it.
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.data_dir.chmod(0o700)
        store = await open_store(settings.store_url)
        redis = connect_redis(settings.redis_url, cluster=settings.redis_cluster)
        engine = cls(settings, redis, store)
        try:
            await engine.records.open()
            await engine.rebuild_redis_if_empty()
        except BaseException:
            await engine.close()
            raise
        if background:
            engine._spawn(engine._watch_redis(), "redis-watch")
            engine._spawn(engine.accounts.revocations.run(), "revocations")
            engine._spawn(engine.booking.run_expiry(), "request-expiry")
            engine._spawn(engine.waitlist.run_sweeper(), "waitlist-sweeper")
            engine._spawn(engine.notifications.outbox.run(), "outbox-drainer")
            await engine.hub.start()
        return engine

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def rebuild_redis_if_empty(self) -> bool:
        """Rebuild Redis from the store if this Redis has not been built yet. True if it was."""
        if await self.redis.exists(keys.hydrated()):
            return False
        await self.rebuild_redis()
        return True

    async def rebuild_redis(self, *, force: bool = False) -> None:
        """Rebuild every hot structure (directory, slots, deadlines) from the durable store.

        Without ``force`` (start-up, the Redis watcher) only doctors whose hydrated marker is
        missing get their agenda rebuilt; ``force`` (``healthmed rebuild``) rebuilds every
        doctor's agenda from the store, keeping only in-flight creates and edits.
        """
        await self.accounts.restore_revocations()
        count = await self.directory.rebuild()
        await self.booking.rebuild(force=force)
        await self.redis.set(keys.hydrated(), "1")
        log.info("rebuilt redis from the store: %d doctors", count)

    async def _watch_redis(self) -> None:
        """Notice a flushed, replaced or failed-over Redis between requests and rebuild it;
        once Redis answers again, apply the invalidations that could not reach it.

        A flush drops the hydrated markers (rebuilt per doctor). A failover keeps them, but
        replication is asynchronous: the promoted replica may lack the old master's last
        writes (a reservation, an accept's slot change), so when the set of masters changes
        every agenda is rebuilt from the store (``force``, which keeps in-flight changes).
        """
        masters: frozenset[str] | None = None
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.rebuild_redis_if_empty()
                await self.booking.retry_invalidations()
                now = await self._masters()
                if masters is not None and now != masters:
                    log.warning("redis masters changed (failover): rebuilding from the store")
                    await self.rebuild_redis(force=True)
                masters = now
            except Exception:  # a broken Redis is reported by /health/ready; keep watching
                log.warning("redis watch: rebuilding redis failed", exc_info=True)

    async def _masters(self) -> frozenset[str]:
        """Who holds the hot state now: the cluster's masters (as the client's slot map has
        them), or a single server's run id (a new id after a managed failover or a restart)."""
        if not self.settings.redis_url:
            return frozenset()  # the in-process Redis: it cannot fail over
        primaries = getattr(self.redis, "get_primaries", None)
        if primaries is not None:
            return frozenset(node.name for node in primaries())
        info = await self.redis.info("server")
        return frozenset({str(info.get("run_id", ""))})

    async def authenticate(self, token: str) -> Principal:
        """Verify an access token and that it was not revoked; ``Unauthenticated`` otherwise."""
        principal = self.tokens.verify(token)
        await self.accounts.check_not_revoked(principal)
        return principal

    async def export_user(self, principal: Principal) -> dict[str, Any]:
        """LGPD portability: every section every service holds of this user."""
        document: dict[str, Any] = {}
        for part in self.privacy_parts:
            document.update(await part.export_user(principal))
        return document

    async def erase_user(self, principal: Principal) -> None:
        """LGPD erasure across every service; accounts (anonymisation) last.

        The user's access tokens are revoked first, so no other request of theirs can add
        data (an upload, a booking) behind the erasure; requests already past authentication
        can still finish, which is why each part's erasure is idempotent and may be rerun.
        """
        await self.accounts.revoke_access_tokens(principal.user_id)
        for part in sorted(self.privacy_parts, key=lambda p: p is self.accounts):
            await part.erase_user(principal)

    async def ready(self) -> dict[str, str]:
        """Ping every dependency (at once, each for at most ``READY_TIMEOUT_SECONDS``): their
        states when all answer, else ``Unavailable`` (``redis_unavailable`` or
        ``store_unavailable``) with every state (``checks``) and the parts that cannot serve
        meanwhile (``degraded``, README "Degraded mode")."""

        async def probe(ping: Awaitable[object]) -> str:
            try:
                async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                    await ping
            except Exception:
                return "down"
            return "ok"

        redis, store = await asyncio.gather(probe(self.redis.ping()), probe(self.store.ping()))
        checks = {"redis": redis, "store": store}
        if store != "ok":
            raise Unavailable(
                "the durable store does not answer", code="store_unavailable",
                checks=checks, degraded=["all"],
            )  # fmt: skip
        if redis != "ok":
            raise Unavailable(
                "redis does not answer", code="redis_unavailable",
                checks=checks, degraded=list(NEEDS_REDIS),
            )  # fmt: skip
        return checks

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.hub.close()
        with contextlib.suppress(Exception):
            await self.records.close()
        with contextlib.suppress(Exception):
            await self.notifications.close()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        await self.store.close()


__all__ = ["Engine", "PrivacyPart"]
