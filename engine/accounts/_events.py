"""Security events of an account (2FA, password, reset), kept for the user's own export.

Stored as ``USER#<id>/SEC#<ms>#<ulid>``: the kind and the time, never a secret, code or
token. Listed oldest first in ``GET /v1/me/export`` (``security_events``); erased with the
account.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from engine.store import Delete, Item
from engine.store import keys as store_keys
from engine.timeutil import new_id, now_ms, to_rfc3339

if TYPE_CHECKING:
    from engine.store import Store

EventKind = Literal[
    "mfa.enrolled",
    "mfa.activated",
    "mfa.disabled",
    "mfa.recovery_code_used",
    "password.changed",
    "password.reset_requested",
    "password.reset",
]
PREFIX = store_keys.SECURITY_EVENT_PREFIX
KEPT = 500
"""Events exported per account at most (the oldest first)."""


class SecurityEvent(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    at: str


class SecurityLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, user_id: str, kind: EventKind) -> None:
        at = now_ms()
        await self._store.put(
            Item(
                pk=store_keys.user_pk(user_id),
                sk=store_keys.security_event_sk(at, new_id()),
                data={"kind": kind},
            )
        )

    async def list(self, user_id: str) -> list[SecurityEvent]:
        items = await self._store.query(store_keys.user_pk(user_id), prefix=PREFIX, limit=KEPT)
        return [
            SecurityEvent(kind=str(i.data["kind"]), at=to_rfc3339(int(i.sk.split("#")[1])))
            for i in items
        ]

    async def erase(self, user_id: str) -> None:
        while items := await self._store.query(
            store_keys.user_pk(user_id), prefix=PREFIX, limit=100
        ):
            await self._store.transact([Delete(pk=i.pk, sk=i.sk) for i in items])
