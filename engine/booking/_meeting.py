"""Teleconsultation links: a provider interface and a Jitsi-style default.

A confirmed appointment gets an unguessable room; each participant joins with their own signed
token (HS256 with ``HEALTHMED_MEETING_SECRET``) valid from 10 minutes before the start until
the end (start + ``HEALTHMED_MEETING_MINUTES``). A link is useless before, after, or for
another room.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Protocol

import jwt

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.principal import Role

EARLY_JOIN_MS = 10 * 60_000


class MeetingProvider(Protocol):
    def new_room(self) -> str:
        """A fresh, unguessable room name."""

    def join_url(self, room: str, *, user_id: str, role: Role, starts_at: int, ends_at: int) -> str:
        """The URL one participant opens to join ``room`` (times in ms)."""


class JitsiMeetings:
    """Jitsi-Meet-style links: ``<base>/<room>?jwt=<token>`` (Jitsi's token authentication
    claims: ``aud``, ``iss``, ``sub``, ``room``, ``context.user``)."""

    audience = "jitsi"
    issuer = "healthmed"

    def __init__(self, settings: Settings) -> None:
        self._base = settings.meeting_base_url.rstrip("/")
        self._secret = settings.meeting_secret
        self._host = self._base.split("://", 1)[-1].split("/", 1)[0]

    def new_room(self) -> str:
        return "hm-" + secrets.token_urlsafe(24)

    def token(self, room: str, *, user_id: str, role: Role, starts_at: int, ends_at: int) -> str:
        claims = {
            "aud": self.audience,
            "iss": self.issuer,
            "sub": self._host,
            "room": room,
            "nbf": (starts_at - EARLY_JOIN_MS) // 1000,
            "exp": ends_at // 1000,
            "context": {"user": {"id": user_id, "moderator": role == "doctor", "role": role}},
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def join_url(self, room: str, *, user_id: str, role: Role, starts_at: int, ends_at: int) -> str:
        token = self.token(room, user_id=user_id, role=role, starts_at=starts_at, ends_at=ends_at)
        return f"{self._base}/{room}?jwt={token}"
