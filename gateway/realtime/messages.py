"""The websocket protocol's messages, topics and close codes (``docs/API.md``, "Real-time").

Transport-free: :mod:`gateway.realtime.edge` feeds client messages in as bytes and writes
the replies out.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

import msgspec

from engine.realtime import doctor_appointments_topic, patient_appointments_topic
from gateway.problems import status_of

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.errors import EngineError
    from engine.principal import Principal

# -- limits ------------------------------------------------------------------------------

MAX_FRAGMENTS = 16
"""Frames one message may span (the size limit alone would allow endless empty ones)."""


def max_frame_bytes(settings: Settings) -> int:
    """The size past which websockets stops reading a message and closes with 1009 (uvicorn's
    ``ws_max_size``); between ``ws_max_message_bytes`` and this it is answered ``bad_message``.
    Client messages are tiny (auth, subscribe, ping), so this need not buffer more."""
    return max(64 * 1024, 4 * settings.ws_max_message_bytes)


# -- client messages ---------------------------------------------------------------------


class Auth(msgspec.Struct, frozen=True, kw_only=True, tag="auth"):
    token: str


class Subscribe(msgspec.Struct, frozen=True, kw_only=True, tag="subscribe"):
    topic: str


class Unsubscribe(msgspec.Struct, frozen=True, kw_only=True, tag="unsubscribe"):
    topic: str


class Ping(msgspec.Struct, frozen=True, kw_only=True, tag="ping"):
    pass


ClientMessage = Auth | Subscribe | Unsubscribe | Ping

# -- server messages ---------------------------------------------------------------------

ErrorCode = Literal[
    "bad_message", "unknown_topic", "forbidden_topic", "too_many_topics", "already_authenticated"
]


class Ready(msgspec.Struct, frozen=True, kw_only=True, tag="ready"):
    role: str
    user_id: str
    topics: list[str]


class Subscribed(msgspec.Struct, frozen=True, kw_only=True, tag="subscribed"):
    topic: str


class Unsubscribed(msgspec.Struct, frozen=True, kw_only=True, tag="unsubscribed"):
    topic: str


class Pong(msgspec.Struct, frozen=True, kw_only=True, tag="pong"):
    pass


class Error(msgspec.Struct, frozen=True, kw_only=True, tag="error"):
    code: ErrorCode
    detail: str


ServerMessage = Ready | Subscribed | Unsubscribed | Pong | Error

_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


def encode(message: ServerMessage) -> bytes:
    """A server message as the UTF-8 JSON of a text frame (the same type as event frames)."""
    return _encoder.encode(message)


PONG = encode(Pong())


def decode(data: bytes, limit: int) -> ClientMessage | Error:
    """One client message (text or binary frame payload), or the ``bad_message`` reply."""
    if len(data) > limit:
        return Error(code="bad_message", detail=f"message larger than {limit} bytes")
    try:
        message: ClientMessage = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        return Error(code="bad_message", detail=f"invalid message: {exc}"[:200])
    except (msgspec.DecodeError, UnicodeDecodeError):
        return Error(code="bad_message", detail="malformed JSON")
    return message


# -- close codes: the one place ----------------------------------------------------------

CloseReason = Literal["slow", "shutdown", "idle", "token_expired", "token_revoked", "rate_limited"]

CLOSES: dict[CloseReason, tuple[int, str]] = {
    "slow": (1013, "too slow: events were dropped; reconnect and resync"),
    "shutdown": (1001, "server shutting down; reconnect and resync"),
    "idle": (4408, "idle: send a ping at least every ws_idle_seconds"),
    "token_expired": (4401, "token expired; reconnect with a fresh token"),
    "token_revoked": (4401, "token revoked (logout, erasure or a stolen refresh token)"),
    "rate_limited": (4429, "too many messages"),
}


def close_code(exc: EngineError) -> int:
    """Engine errors close a websocket with 4000 + their HTTP status (4401, 4429, 4503...)."""
    return 4000 + status_of(exc)


# -- topics ------------------------------------------------------------------------------

_TOPIC = re.compile(r"(doctor|patient)\.([A-Za-z0-9_-]{1,64})\.(slots|appointments)")


def is_topic(topic: str) -> bool:
    """Whether ``topic`` has the shape of a topic (anyone's)."""
    return _TOPIC.fullmatch(topic) is not None


def private_topic(principal: Principal) -> str:
    if principal.role == "doctor":
        return doctor_appointments_topic(principal.user_id)
    return patient_appointments_topic(principal.user_id)


def unknown_topic(topic: str) -> Error:
    return Error(code="unknown_topic", detail=f"no such topic: {topic[:100]!r}")


def topic_error(principal: Principal, topic: str) -> Error | None:
    """Why ``principal`` may not subscribe to ``topic``, or None if it may.

    ``doctor.<id>.slots`` is open to anyone authenticated (an unknown id simply never has
    events); ``<role>.<id>.appointments`` only to that user.
    """
    match = _TOPIC.fullmatch(topic)
    if match is None or (match[1] == "patient" and match[3] == "slots"):
        return unknown_topic(topic)
    if match[3] == "slots":
        return None
    if match[1] != principal.role or match[2] != principal.user_id:
        return Error(code="forbidden_topic", detail="that topic belongs to another user")
    return None


__all__ = [
    "CLOSES",
    "PONG",
    "Auth",
    "ClientMessage",
    "CloseReason",
    "Error",
    "Ping",
    "Ready",
    "ServerMessage",
    "Subscribe",
    "Subscribed",
    "Unsubscribe",
    "Unsubscribed",
    "close_code",
    "decode",
    "encode",
    "is_topic",
    "private_topic",
    "topic_error",
    "unknown_topic",
]
