"""Password hashing: Argon2id with OWASP's parameters, off the event loop, with a cap.

Each hash or verify costs ~19 MiB and tens of milliseconds of CPU. They run on a dedicated
thread pool (argon2-cffi releases the GIL) behind semaphores of ``hash_concurrency`` permits,
so a login storm queues here instead of stalling the event loop or exhausting memory; every
other request keeps being served. Logins (``verify``) and new hashes (registrations, password
changes and resets: ``hash``) have permits of their own, so a registration flood never makes
logins wait (300 registrations in flight made a login take 2.9 s when they shared them).
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

TIME_COST = 2
MEMORY_COST_KIB = 19456
PARALLELISM = 1
"""OWASP Password Storage Cheat Sheet, Argon2id: m=19 MiB, t=2, p=1."""


class Passwords:
    def __init__(self, concurrency: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=TIME_COST,
            memory_cost=MEMORY_COST_KIB,
            parallelism=PARALLELISM,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Two sets of permits: logins (verify) never queue behind registrations, password
        # changes and resets (hash), however many of those are in flight; each kind is
        # capped at ``concurrency``, so the threads never exceed twice that.
        self._pool = ThreadPoolExecutor(max_workers=2 * concurrency, thread_name_prefix="argon2")
        self._permits = asyncio.Semaphore(concurrency)
        self._hash_permits = asyncio.Semaphore(concurrency)
        # Verified in place of the hash of an unknown account; made once, up front, so the
        # first unknown login costs what a wrong password costs (~tens of ms at start-up).
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        async with self._hash_permits:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._hasher.hash, password)

    async def verify(
        self,
        stored_hash: str | None,
        password: str,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """True if ``password`` matches. With ``stored_hash=None`` (unknown account) a dummy
        hash is verified instead, so the time taken does not reveal whether the account
        exists. ``admit`` runs once a permit is held, right before the hash; whatever it
        raises ends the call without hashing."""
        if stored_hash is None:
            stored_hash = self._dummy
            password = "\x00" + password  # can never match the random dummy
        async with self._permits:
            if admit is not None:
                await admit()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._check, stored_hash, password)

    def _check(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False)
