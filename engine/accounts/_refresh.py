"""Refresh tokens: opaque ``<family>.<secret>`` strings whose state lives in the durable store.

A *family* is one login. Its item ``REFRESH#<family>/TOKEN`` holds the user, role, the SHA-256
of the one current secret, the hashes of the secrets already spent, the expiry (ms) and a
``revoked`` flag; ``USER#<id>/REFRESH#<family>`` indexes a user's families (erasure revokes
them all). Only hashes are stored, so a store dump yields no usable token.

Rotation is a put conditioned on the version read: of two refreshes racing with the same
secret exactly one wins; the loser then finds its secret spent. Presenting a spent secret is
*reuse*: the token was copied, so the whole family is revoked and both holders must log in
again. Families live in the store, not Redis, so a lost Redis logs nobody out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any

from engine.errors import Unauthenticated
from engine.store import ConditionFailed, Item, Put
from engine.store import keys as store_keys
from engine.store.keys import family_pk
from engine.timeutil import new_id, now_ms

if TYPE_CHECKING:
    from engine.principal import Role
    from engine.store import Store

SPENT_KEPT = 64
"""Spent secret hashes remembered per family: reuse of any of the last 64 revokes it."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class RefreshReused(Unauthenticated):
    """A spent refresh token came back: it was copied. ``user_id`` is for revocation only and
    is never shown to the client."""

    def __init__(self, user_id: str) -> None:
        super().__init__(
            "refresh token reused; every session of this login is revoked",
            code="refresh_token_reused",
        )
        self.user_id = user_id


def _invalid() -> Unauthenticated:
    return Unauthenticated("invalid refresh token", code="invalid_refresh_token")


def split(token: str) -> tuple[str, str]:
    family, dot, secret = token.partition(".")
    if not dot or not family or not secret or len(token) > 200:
        raise _invalid()
    return family, secret


class RefreshTokens:
    def __init__(self, store: Store, ttl_seconds: int) -> None:
        self._store = store
        self._ttl_ms = ttl_seconds * 1000

    async def start_family(self, user_id: str, role: Role) -> str:
        """A new login: a new family and its first token."""
        family, secret = new_id(), secrets.token_urlsafe(32)
        now = now_ms()
        state = {
            "user_id": user_id,
            "role": role,
            "current": _digest(secret),
            "spent": [],
            "created_at": now,
            "expires_at": now + self._ttl_ms,
            "revoked": False,
        }
        await self._store.transact(
            [
                Put(
                    item=Item(pk=family_pk(family), sk=store_keys.TOKEN_SK, data=state),
                    expect="absent",
                ),
                Put(
                    item=Item(
                        pk=store_keys.user_pk(user_id),
                        sk=store_keys.family_index_sk(family),
                        data={"at": now},
                    ),
                    expect="absent",
                ),
            ]
        )
        return f"{family}.{secret}"

    async def rotate(self, token: str) -> tuple[str, Role, str]:
        """Spend ``token``: (user id, role, next token). ``Unauthenticated`` if it is not the
        family's current token; a spent one revokes the family."""
        family, secret = split(token)
        item = await self._store.get(family_pk(family), store_keys.TOKEN_SK)
        if item is None:
            raise _invalid()
        state = item.data
        digest = _digest(secret)
        if state.get("revoked"):
            raise Unauthenticated("refresh token revoked", code="refresh_token_revoked")
        if not hmac.compare_digest(digest, str(state.get("current", ""))):
            if digest in state.get("spent", []):
                await self.revoke(family)
                raise RefreshReused(str(state["user_id"]))
            raise _invalid()
        if int(state["expires_at"]) <= now_ms():
            raise Unauthenticated("refresh token expired", code="refresh_token_expired")
        next_secret = secrets.token_urlsafe(32)
        spent = [*state.get("spent", []), digest][-SPENT_KEPT:]
        new_state = {**state, "current": _digest(next_secret), "spent": spent}
        try:
            await self._store.put(Item(pk=item.pk, sk=item.sk, data=new_state), expect=item.version)
        except ConditionFailed:
            # Someone rotated (or revoked) this family since our read: our secret is spent now.
            await self.revoke(family)
            raise RefreshReused(str(state["user_id"])) from None
        role: Role = "doctor" if state["role"] == "doctor" else "patient"
        return str(state["user_id"]), role, f"{family}.{next_secret}"

    async def owner(self, token: str) -> str | None:
        """The user id of the family ``token`` names (any of its secrets), or None."""
        try:
            family, _ = split(token)
        except Unauthenticated:
            return None
        item = await self._store.get(family_pk(family), store_keys.TOKEN_SK)
        return None if item is None else str(item.data.get("user_id"))

    async def revoke(self, family: str) -> None:
        """Mark the family revoked; idempotent, retried over concurrent rotations."""
        for _ in range(10):
            item = await self._store.get(family_pk(family), store_keys.TOKEN_SK)
            if item is None or item.data.get("revoked"):
                return
            data: dict[str, Any] = {**item.data, "revoked": True}
            try:
                await self._store.put(Item(pk=item.pk, sk=item.sk, data=data), expect=item.version)
                return
            except ConditionFailed:
                continue

    async def revoke_token(self, token: str, user_id: str) -> None:
        """Logout: revoke the family of ``token`` if it belongs to ``user_id``."""
        if await self.owner(token) == user_id:
            await self.revoke(split(token)[0])

    async def revoke_all(self, user_id: str) -> int:
        """Erasure: revoke every family of the user. Returns how many were indexed."""
        index = await self._store.query(
            store_keys.user_pk(user_id), prefix=store_keys.REFRESH_PREFIX
        )
        for entry in index:
            await self.revoke(store_keys.family_of(entry.sk))
        return len(index)
