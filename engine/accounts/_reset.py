"""Password reset by e-mail: a single-use code valid 30 minutes, stored hashed.

``request`` answers at once, the same whether or not the account exists: the lookup, the
write and the e-mail happen in a background task, so neither the answer nor its timing says
anything about the account. When the account exists, one store transaction writes
``RESET#<sha256(code)>/RESET`` (user id, expiry) and queues the ``password.reset`` e-mail in
the notifications outbox (``Code: <code>`` in its text part), so the code exists exactly when
its e-mail is on its way. At most ``PER_ACCOUNT_PER_HOUR`` codes a user an hour (no mail bomb).

The code itself never sits in clear text in the store: the outbox message's context holds it
*sealed* (``sealed_code``: a fresh data key wrapped by the master key or KMS, context
``{purpose: password_reset, user_id}``, as TOTP secrets and record keys are), and only the
outbox's rendering of that one e-mail opens it (:meth:`PasswordResets.open_context`, the
outbox's ``password.reset`` opener), in memory, just before the send. A store dump or backup
taken while the e-mail waits (up to the 30 minutes the code lives) holds no usable code.

``confirm`` takes the code once: the reset item is deleted in the same transaction that
stores the new password hash, conditioned on the versions read, so two confirmations racing
with one code have one winner. Then every session of the account ends (refresh families and
access tokens) and ``password.reset`` joins its security events.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from engine.accounts import validators as v
from engine.errors import Invalid
from engine.records import SealedValue
from engine.store import ConditionFailed, Delete, Item, Put
from engine.store import keys as store_keys
from engine.timeutil import new_id, now_ms

if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.accounts._core import AccountsCore
    from engine.accounts.models import PasswordReset, PasswordResetConfirm

log = logging.getLogger("healthmed.accounts")

VALID_MS = 30 * 60 * 1000
PER_ACCOUNT_PER_HOUR = 5


class OutboxPort(Protocol):
    """What the reset needs of the notifications outbox (``engine.notifications``)."""

    def put_ops(
        self,
        kind: Any,
        recipient_id: str,
        context: Mapping[str, Any],
        *,
        key: str,
        at: int,
        to: str | None = None,
    ) -> list[Put]: ...

    def wake(self) -> None: ...


def invalid_reset_token() -> Invalid:
    return Invalid("the reset code is wrong, spent or expired", code="invalid_reset_token")


class PasswordResets:
    def __init__(self, accounts: AccountsCore) -> None:
        self._accounts = accounts
        self.outbox: OutboxPort | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, body: PasswordReset) -> None:
        """Start a reset for the account ``body`` names, if any; returns before looking."""
        task = asyncio.create_task(self._send(body), name="password-reset")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for resets under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send(self, body: PasswordReset) -> None:
        try:
            user = await self._accounts.find_for_reset(body.email, body.crm, body.uf)
            if user is not None:
                await self._queue(user)
        except Exception:
            log.warning("password reset could not be queued", exc_info=True)

    async def _queue(self, user: dict[str, Any]) -> None:
        if self.outbox is None:
            log.warning("password reset: no outbox to send the e-mail through")
            return
        user_id = str(user["id"])
        if not await self._accounts.allow_reset(user_id, PER_ACCOUNT_PER_HOUR):
            log.info("password reset: hourly limit reached for %s", user_id)
            return
        code = secrets.token_urlsafe(24)
        sealed = await self._accounts._sealer_open().seal(code.encode(), _context(user_id))
        now = now_ms()
        reset_id = new_id()
        item = Item(
            pk=store_keys.reset_pk(code),
            sk=store_keys.RESET_SK,
            data={
                "user_id": user_id,
                "expires_at": now + VALID_MS,
                "password_stamp": _password_stamp(user),
            },
        )
        ops = [
            Put(item=item, expect="absent"),
            *self.outbox.put_ops(
                "password.reset",
                user_id,
                {
                    "sealed_code": msgspec.to_builtins(sealed),
                    "valid_minutes": VALID_MS // 60_000,
                },
                key=f"reset:{reset_id}",
                at=now,
                to=str(user["email"]),
            ),
        ]
        await self._accounts._store.transact(ops)
        self.outbox.wake()
        await self._accounts.events.record(user_id, "password.reset_requested")
        log.info("password reset queued for %s", user_id)

    async def open_context(self, recipient_id: str, context: Mapping[str, Any]) -> dict[str, Any]:
        """The template context of a queued reset e-mail with its code opened (``code``), for
        rendering that e-mail only: the result is never stored."""
        opened = {k: v for k, v in context.items() if k != "sealed_code"}
        if "sealed_code" in context:
            sealed = msgspec.convert(context["sealed_code"], SealedValue)
            plain = await self._accounts._sealer_open().unseal(sealed, _context(recipient_id))
            opened["code"] = plain.decode()
        return opened

    async def confirm(self, body: PasswordResetConfirm) -> None:
        """Spend the code and set the password (``Invalid`` ``invalid_reset_token``,
        ``weak_password``); every session of the account ends."""
        password = v.password(body.password)
        if not body.token or len(body.token) > 200:
            raise invalid_reset_token()
        item = await self._accounts._store.get(store_keys.reset_pk(body.token), store_keys.RESET_SK)
        if item is None or int(item.data.get("expires_at", 0)) <= now_ms():
            raise invalid_reset_token()
        user_id = str(item.data["user_id"])
        digest = await self._accounts._passwords.hash(password)
        for _ in range(10):
            profile = await self._accounts._profile_item(user_id)
            if profile is None:
                raise invalid_reset_token()
            if item.data.get("password_stamp") != _password_stamp(profile.data):
                # The password changed since this code was sent (another code was spent, or
                # the owner changed it): every code sent before that is void.
                raise invalid_reset_token()
            data = {**profile.data, "password_hash": digest}
            try:
                await self._accounts._store.transact(
                    [
                        Delete(pk=item.pk, sk=item.sk, expect=item.version),
                        Put(
                            item=msgspec.structs.replace(profile, data=data),
                            expect=profile.version,
                        ),
                    ]
                )
            except ConditionFailed as exc:
                if exc.index == 0:
                    raise invalid_reset_token() from None
                continue  # the profile changed meanwhile: read it again
            break
        else:
            raise invalid_reset_token()
        await self._accounts.revoke_sessions(user_id)
        await self._accounts.events.record(user_id, "password.reset")
        log.info("password reset for %s", user_id)


def _context(user_id: str) -> dict[str, str]:
    return {"purpose": "password_reset", "user_id": user_id}


def _password_stamp(profile: dict[str, Any]) -> str:
    """A short digest of the account's current password hash: a reset code carries the stamp
    of the password it was sent for, and is void once that password has changed."""
    return hashlib.sha256(str(profile.get("password_hash", "")).encode()).hexdigest()[:32]
