"""``GET /v1/ws``: the real-time websocket (protocol in ``API.md``, "Real-time").

One task per connection, the one the ASGI server runs the handler in. That task's loop both
reads client messages and writes the frames the hub queued for it: the hub wakes a task that
is waiting for a client message by interrupting that wait (``Task.cancel`` followed by
``Task.uncancel``, the mechanism ``asyncio.timeout`` uses; the ASGI receive queue is
cancel-safe, so no client message is lost). An idle connection therefore costs the handler's
frame, a :class:`Subscriber`, and one timer, and no extra task.

Catch-up after a reconnect is a resync, not a replay: events carry no sequence number, and a
client that (re)connects re-reads ``GET /v1/doctors/{id}/slots`` and ``GET /v1/appointments``
after ``ready``/``subscribed`` and applies events from then on. The same holds after a close
for slowness (1013), which is how a client learns it missed events.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import TYPE_CHECKING, Any, Literal

import msgspec

# Response, WebSocket and Problem are runtime imports: Litestar reads handler annotations.
from litestar import Response, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect

from engine.errors import EngineError, Unauthenticated
from engine.realtime import (
    Subscriber,
    doctor_appointments_topic,
    patient_appointments_topic,
)
from gateway.problems import Problem, problem_response, problems

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.principal import Principal
    from engine.realtime import Hub
    from engine.runtime import Engine

# -- messages ---------------------------------------------------------------------------


class Auth(msgspec.Struct, frozen=True, kw_only=True, tag="auth"):
    token: str


class Subscribe(msgspec.Struct, frozen=True, kw_only=True, tag="subscribe"):
    topic: str


class Unsubscribe(msgspec.Struct, frozen=True, kw_only=True, tag="unsubscribe"):
    topic: str


class Ping(msgspec.Struct, frozen=True, kw_only=True, tag="ping"):
    pass


ClientMessage = Auth | Subscribe | Unsubscribe | Ping

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


def _text(message: ServerMessage) -> str:
    return _encoder.encode(message).decode()


_PONG = _text(Pong())

# -- close codes: the one place ----------------------------------------------------------

CloseReason = Literal["slow", "shutdown", "idle", "token_expired", "rate_limited"]

_CLOSES: dict[CloseReason, tuple[int, str]] = {
    "slow": (1013, "too slow: events were dropped; reconnect and resync"),
    "shutdown": (1001, "server shutting down; reconnect and resync"),
    "idle": (4408, "idle: send a ping at least every ws_idle_seconds"),
    "token_expired": (4401, "token expired; reconnect with a fresh token"),
    "rate_limited": (4429, "too many messages"),
}


def close_code(exc: EngineError) -> int:
    """Engine errors close a websocket with 4000 + their HTTP status (4401, 4429, 4503...)."""
    return 4000 + exc.status


# -- topics ------------------------------------------------------------------------------

_TOPIC = re.compile(r"(doctor|patient)\.([A-Za-z0-9_-]{1,64})\.(slots|appointments)")


def private_topic(principal: Principal) -> str:
    if principal.role == "doctor":
        return doctor_appointments_topic(principal.user_id)
    return patient_appointments_topic(principal.user_id)


def topic_error(principal: Principal, topic: str) -> Error | None:
    """Why ``principal`` may not subscribe to ``topic``, or None if it may.

    ``doctor.<id>.slots`` is open to anyone authenticated (an unknown id simply never has
    events); ``<role>.<id>.appointments`` only to that user.
    """
    match = _TOPIC.fullmatch(topic)
    if match is None or (match[1] == "patient" and match[3] == "slots"):
        return Error(code="unknown_topic", detail=f"no such topic: {topic[:100]!r}")
    if match[3] == "slots":
        return None
    if match[1] != principal.role or match[2] != principal.user_id:
        return Error(code="forbidden_topic", detail="that topic belongs to another user")
    return None


# -- one connection ----------------------------------------------------------------------


class _Connection(Subscriber):
    """A websocket as a hub subscriber, with its limits and its one timer."""

    __slots__ = (
        "deadline",
        "ending",
        "idle",
        "interrupted",
        "last_seen",
        "principal",
        "sending",
        "socket",
        "stamp",
        "task",
        "timer",
        "tokens",
        "waiting",
    )

    def __init__(
        self, socket: WebSocket[Any, Any, Any], principal: Principal, settings: Settings
    ) -> None:
        super().__init__()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self.socket = socket
        self.principal = principal
        self.task = task
        self.waiting = False
        self.sending = False
        self.interrupted = False
        self.ending: CloseReason | None = None
        now = loop.time()
        self.last_seen = now
        self.idle = float(settings.ws_idle_seconds)
        self.tokens = float(settings.ws_rate_burst)
        self.stamp = now
        # The token's expiry on the loop clock: the connection lives no longer than its token.
        self.deadline = now + (principal.expires_at - time.time())
        self.timer = loop.call_at(min(self.deadline, now + settings.ws_idle_seconds), self._tick)

    def wake(self) -> None:
        """Interrupt the wait for a client message (or, once dropped, a blocked write)."""
        if self.interrupted:
            return
        if self.waiting or (self.sending and self.dropped is not None):
            self.interrupted = True
            self.task.cancel()

    def _was_interrupted(self) -> bool:
        """In an ``except CancelledError``: True if the cancel was only our own wake-up."""
        if not self.interrupted:
            return False
        self.interrupted = False
        return self.task.uncancel() == 0

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle_at = self.last_seen + self.idle
        if now >= self.deadline:
            self.ending = "token_expired"
        elif now >= idle_at:
            self.ending = "idle"
        else:
            self.timer = loop.call_at(min(self.deadline, idle_at), self._tick)
            return
        self.wake()

    def take_token(self, rate: float, burst: float, now: float) -> bool:
        """Token bucket of client messages: ``burst`` at once, ``rate`` per second after."""
        self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    async def receive(self) -> dict[str, Any] | None:
        """The next ASGI event from the client, or None when woken by the hub or the timer."""
        self.waiting = True
        try:
            return dict(await self.socket.receive())
        except asyncio.CancelledError:
            if self._was_interrupted():
                return None
            raise
        finally:
            self.waiting = False

    async def flush(self) -> bool:
        """Write every queued frame. False if the write was abandoned for a dropped client."""
        send = self.socket.send
        while self.frames:
            batch, self.frames = self.frames, []
            self.sending = True
            try:
                for frame in batch:
                    await send({"type": "websocket.send", "text": frame, "bytes": None})
            except asyncio.CancelledError:
                if self._was_interrupted():
                    return False
                raise
            finally:
                self.sending = False
        return True


async def _close(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await socket.close(code=code, reason=reason[:120])


def _decode(event: dict[str, Any], limit: int) -> ClientMessage | Error:
    data: str | bytes | None = event.get("text")
    if data is None:
        data = event.get("bytes") or b""
    size = len(data)
    if isinstance(data, str) and size * 4 > limit and size <= limit:
        size = len(data.encode())
    if size > limit:
        return Error(code="bad_message", detail=f"message larger than {limit} bytes")
    try:
        message: ClientMessage = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        return Error(code="bad_message", detail=f"invalid message: {exc}"[:200])
    except msgspec.DecodeError:
        return Error(code="bad_message", detail="malformed JSON")
    return message


async def _authenticate(socket: WebSocket[Any, Any, Any], engine: Engine) -> Principal | None:
    """The first message must authenticate within ``ws_auth_seconds``; None after closing."""
    settings = engine.settings
    try:
        async with asyncio.timeout(settings.ws_auth_seconds):
            event = dict(await socket.receive())
    except TimeoutError:
        await _close(socket, 4401, "authentication timeout: send {type: auth} first")
        return None
    if event["type"] != "websocket.receive":
        return None
    message = _decode(event, settings.ws_max_message_bytes)
    if not isinstance(message, Auth):
        await _close(socket, 4401, "the first message must be {type: auth, token}")
        return None
    try:
        return await engine.authenticate(message.token)
    except EngineError as exc:
        code = exc.code if isinstance(exc, Unauthenticated) else "unavailable"
        await _close(socket, close_code(exc), code)
        return None


def _handle(conn: _Connection, hub: Hub, message: ClientMessage | Error, settings: Settings) -> str:
    """Apply one client message; the reply frame."""
    match message:
        case Error():
            return _text(message)
        case Ping():
            return _PONG
        case Subscribe(topic=topic):
            error = topic_error(conn.principal, topic)
            if error is not None:
                return _text(error)
            if topic not in conn.topics and len(conn.topics) >= settings.ws_max_topics:
                limit = settings.ws_max_topics
                return _text(Error(code="too_many_topics", detail=f"at most {limit} topics"))
            hub.subscribe(conn, topic)
            return _text(Subscribed(topic=topic))
        case Unsubscribe(topic=topic):
            if _TOPIC.fullmatch(topic) is None:
                return _text(Error(code="unknown_topic", detail=f"no such topic: {topic[:100]!r}"))
            hub.unsubscribe(conn, topic)
            return _text(Unsubscribed(topic=topic))
        case Auth():
            return _text(Error(code="already_authenticated", detail="already authenticated"))


async def _serve(conn: _Connection, hub: Hub, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    rate, burst = float(settings.ws_rate_per_second), float(settings.ws_rate_burst)
    while True:
        if conn.frames and not await conn.flush():
            return  # dropped while blocked on a write: the server closes the transport
        reason = conn.dropped or conn.ending
        if reason is not None:
            await _close(conn.socket, *_CLOSES[reason])
            return
        event = await conn.receive()
        if event is None:
            continue
        if event["type"] != "websocket.receive":
            return
        now = loop.time()
        conn.last_seen = now
        if not conn.take_token(rate, burst, now):
            conn.ending = "rate_limited"
            continue
        reply = _handle(conn, hub, _decode(event, settings.ws_max_message_bytes), settings)
        if conn.dropped is None:
            conn.frames.append(reply)


_DESCRIPTION = """\
Websocket (upgrade this GET). A plain GET without the upgrade answers 426.

**Auth.** The first message must be `{"type":"auth","token":"<access token>"}` within
5 s; otherwise (also for a bad, expired or revoked token) the server closes with 4401. The
reply is `{"type":"ready","role","user_id","topics"}`, where `topics` is the private topic
joined automatically (`doctor.<id>.appointments` or `patient.<id>.appointments`).

**Client messages.** `{"type":"subscribe","topic"}` → `{"type":"subscribed","topic"}`;
`{"type":"unsubscribe","topic"}` → `{"type":"unsubscribed","topic"}`;
`{"type":"ping"}` → `{"type":"pong"}`. Errors: `{"type":"error","code","detail"}` with
`bad_message` (malformed JSON, unknown type, larger than 4096 bytes), `unknown_topic`,
`forbidden_topic` (another user's private topic), `too_many_topics` (more than 50).

**Topics.** `doctor.<id>.slots` (anyone authenticated), `doctor.<id>.appointments` (that
doctor), `patient.<id>.appointments` (that patient). Events:
`{"type":"event","topic","event","data","at"}`.

**Catch-up: resync, no replay.** Events carry no sequence number. After (re)connecting and
receiving `subscribed`, a client re-reads `GET /v1/doctors/{id}/slots` and
`GET /v1/appointments` and applies events from then on.

**Limits and closes.** 10 messages/s (burst 60), else close 4429. No client message for
60 s closes 4408: send `ping` meanwhile (the server also sends protocol pings). A client that
does not read its frames fast enough (256 queued) is closed with 1013 (events were dropped:
reconnect and resync). The connection closes with 4401 when its token expires. Shutdown
closes with 1001 (1012 when the ASGI server closes first).
"""


@websocket("/v1/ws", name="realtime")
async def realtime(socket: WebSocket[Any, Any, Any], engine: Engine) -> None:
    """Real-time events (see the GET operation of the same path for the protocol)."""
    await socket.accept()
    settings = engine.settings
    try:
        principal = await _authenticate(socket, engine)
        if principal is None:
            return
        hub = engine.hub
        conn = _Connection(socket, principal, settings)
        try:
            hub.attach(conn)
            private = private_topic(principal)
            hub.subscribe(conn, private)
            ready = Ready(role=principal.role, user_id=principal.user_id, topics=[private])
            conn.frames.append(_text(ready))
            await _serve(conn, hub, settings)
        finally:
            conn.timer.cancel()
            hub.detach(conn)
    except (WebSocketDisconnect, OSError):
        return  # the client went away; nothing to tell it


@get(
    "/v1/ws",
    tags=["real-time"],
    summary="Real-time events (websocket)",
    description=_DESCRIPTION,
    responses=problems(426),
    status_code=426,
    security=[{}],
)
async def realtime_doc() -> Response[Problem]:
    """Without the websocket upgrade: 426 Upgrade Required."""
    return problem_response(
        426,
        "GET /v1/ws is a websocket: connect with Upgrade: websocket",
        "upgrade_required",
        headers={"Upgrade": "websocket"},
    )


route_handlers = [realtime, realtime_doc]

__all__ = ["ClientMessage", "ServerMessage", "close_code", "route_handlers", "topic_error"]
