"""Idle, token-expiry and revocation checks of websocket connections: one timer per process."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from engine.accounts import Revocations
    from engine.principal import Principal
    from gateway.realtime.messages import CloseReason

log = logging.getLogger("healthmed.realtime")


class Swept(Protocol):
    """What the sweeper needs of a connection (``gateway.realtime.edge.Swept``)."""

    @property
    def deadline(self) -> float:
        """When the connection's token expires (``time.monotonic()`` seconds)."""

    @property
    def last_seen(self) -> float:
        """When its last client message arrived (``time.monotonic()`` seconds)."""

    @property
    def principal(self) -> Principal | None: ...

    def close(self, reason: CloseReason) -> None:
        """Close with ``reason``'s code; a second close is a no-op."""

    def release(self) -> None:
        """Leave the hub and the sweep (the close failed); idempotent."""


class Sweeper:
    """Idle, token-expiry and revocation checks for every authenticated connection, one
    timer per process.

    Runs every ``min(1, idle / 4)`` seconds while there are connections: a connection closes
    for idleness between ``idle`` and ``idle`` + that period after its last message, and at
    most that period after its token's expiry. When revocations were added since the last
    sweep (a logout, an erasure, a refresh token reused), every connection's token is checked
    against the process's copy, so a revoked session stops receiving events within a period.
    While that copy is not current (its subscription is down) the check waits for it.
    """

    __slots__ = ("conns", "handle", "idle", "period", "revocations", "seen")

    def __init__(self, idle: float, revocations: Revocations) -> None:
        self.idle = idle
        self.period = min(1.0, idle / 4)
        self.revocations = revocations
        self.seen = revocations.version
        self.conns: set[Swept] = set()
        self.handle: asyncio.TimerHandle | None = None

    def add(self, conn: Swept) -> None:
        self.conns.add(conn)
        if self.handle is None:
            self.handle = asyncio.get_running_loop().call_later(self.period, self._sweep)

    def discard(self, conn: Swept) -> None:
        self.conns.discard(conn)

    def _sweep(self) -> None:
        now = time.monotonic()
        idle_before = now - self.idle
        closing: list[tuple[Swept, CloseReason]] = []
        for conn in self.conns:
            if now >= conn.deadline:
                closing.append((conn, "token_expired"))
            elif conn.last_seen <= idle_before:
                closing.append((conn, "idle"))
        revocations = self.revocations
        if revocations.version != self.seen and revocations.live:
            self.seen = revocations.version
            for conn in self.conns:
                principal = conn.principal
                if principal is not None and revocations.revoked(principal):
                    closing.append((conn, "token_revoked"))
        try:
            for conn, reason in closing:
                try:
                    conn.close(reason)  # at most once: a second close is a no-op
                except Exception:  # one broken connection must not stop the sweep
                    log.exception("realtime: closing a websocket failed")
                    conn.release()
        finally:
            loop = asyncio.get_running_loop()
            self.handle = loop.call_later(self.period, self._sweep) if self.conns else None


__all__ = ["Sweeper"]
