"""``GET /v1/ws``: the real-time websocket (protocol in ``API.md``, "Real-time").

One task per connection, the one the ASGI server runs the handler in, reads client messages.
Event frames normally never touch that task: the hub's fan-out calls
:meth:`_Connection.deliver`, which writes the frame straight to the connection's socket,
synchronously, like ``websockets.broadcast`` does (see "Direct writes" below). Only when that
is not possible (older frames still queued, a write of the task in progress, the socket's
buffer full) is the frame queued and the task woken by interrupting its wait for a client
message (``Task.cancel`` followed by ``Task.uncancel``, the mechanism ``asyncio.timeout``
uses; the ASGI receive queue is cancel-safe, so no client message is lost). Idle and token
expiry deadlines are checked by one periodic sweep per process (:class:`_Sweeper`), not a
timer per connection. An idle connection therefore costs the handler's frame and a
:class:`_Connection`, and no extra task or timer.

Direct writes and the coupling to uvicorn: the ASGI ``send`` callable cannot be called
synchronously, and awaiting it from the connection's task for every frame is what made
fan-out slow (a wake-up, a task step, a cancellation and its traceback cycle per client per
event). So at connect time :func:`_sansio_protocol` looks for the ASGI server's protocol
object behind the ``send`` callable the handler got (Litestar's and the middlewares'
wrappers are followed through their ``__wrapped__`` and closures). Only if it is exactly
uvicorn's ``WebSocketsSansIOProtocol`` (``ws="websockets-sansio"``, what ``gateway.cli``
runs) with the attributes used here, are frames written with that object's internals::

    proto.conn.send_text(frame)                       # websockets' Sans-I/O ServerProtocol
    proto.transport.write(b"".join(proto.conn.data_to_send()))

exactly what uvicorn's own ``send`` does for ``websocket.send`` after ``await
proto.writable.wait()``; here only while ``proto.writable`` is set (uvicorn clears it in
``pause_writing``), the protocol state is OPEN, no close was sent, the transport is not
closing and its buffer holds at most ``_WRITE_BUFFER_LIMIT`` bytes. Otherwise the frame is
queued, and the task writes the queue out (directly while the socket takes it, else through
the regular ASGI ``send``, which waits for the buffer to drain); the queue's bound closes a
slow client (1013). Under another ASGI
server (or another uvicorn websocket implementation) no protocol is found and every frame
takes that regular path. Once the protocol is found, the handshake ``request`` and
``response`` uvicorn keeps (read only while handshaking) are released: ~2 KiB a connection.
The attributes used are uvicorn implementation details, so
``pyproject.toml`` pins uvicorn to the minor version this was written against, and
``tests/integration/test_uvicorn_coupling.py`` fails if they change; ``/metrics`` counts the
frames written each way (``healthmed_ws_frames_total{path="direct"|"queued"}``).

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
import weakref
from typing import TYPE_CHECKING, Any, Literal

import msgspec

# Response, WebSocket and Problem are runtime imports: Litestar reads handler annotations.
from litestar import Response, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from engine.errors import EngineError, Unauthenticated
from engine.realtime import (
    Subscriber,
    doctor_appointments_topic,
    patient_appointments_topic,
)
from gateway.problems import Problem, problem_response, problems

try:  # the direct-write path needs uvicorn's websockets-sansio protocol; optional
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.protocol import State as _WsState
    from websockets.server import ServerProtocol as _WsServerProtocol
except ImportError:  # pragma: no cover - another ASGI server: everything goes through send
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from prometheus_client.metrics_core import Metric

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


def _text(message: ServerMessage) -> bytes:
    """A server message as the UTF-8 bytes of a text frame (the hub's frame type)."""
    return _encoder.encode(message)


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


# -- direct writes (uvicorn websockets-sansio only; see the module docstring) --------------

_WRITE_BUFFER_LIMIT = 256 * 1024
"""Above this many bytes in the transport's buffer, frames are queued instead (uvicorn
clears ``writable`` at the transport's high-water mark, 64 KiB on uvloop, before that)."""

_SEARCH_LIMIT = 32


def _sansio_protocol(send: Callable[..., Any]) -> WebSocketsSansIOProtocol | None:
    """uvicorn's websockets-sansio protocol object behind an ASGI ``send``, or None.

    Follows the wrappers between the handler and the server (``functools.wraps``'s
    ``__wrapped__``, closure cells holding callables) to a bound method whose ``__self__``
    is exactly uvicorn's ``WebSocketsSansIOProtocol`` and has every attribute used here.
    """
    if WebSocketsSansIOProtocol is None:  # pragma: no cover - uvicorn not installed
        return None
    todo: list[Any] = [send]
    seen: set[int] = set()
    while todo and len(seen) < _SEARCH_LIMIT:
        fn = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        owner = getattr(fn, "__self__", None)
        if type(owner) is WebSocketsSansIOProtocol:
            return owner if _looks_usable(owner) else None
        wrapped = getattr(fn, "__wrapped__", None)
        if callable(wrapped):
            todo.append(wrapped)
        for cell in getattr(fn, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # an empty cell
                if callable(value := cell.cell_contents) and not isinstance(value, type):
                    todo.append(value)
    return None


def _looks_usable(proto: Any) -> bool:
    """Every attribute the direct path touches, with the expected types."""
    conn = getattr(proto, "conn", None)
    transport = getattr(proto, "transport", None)
    return (
        isinstance(conn, _WsServerProtocol)
        and callable(getattr(conn, "send_text", None))
        and callable(getattr(conn, "data_to_send", None))
        and isinstance(getattr(conn, "state", None), _WsState)
        and isinstance(getattr(proto, "writable", None), asyncio.Event)
        and isinstance(getattr(proto, "close_sent", None), bool)
        and transport is not None
        and callable(getattr(transport, "write", None))
        and callable(getattr(transport, "is_closing", None))
        and callable(getattr(transport, "get_write_buffer_size", None))
    )


def _write_now(proto: WebSocketsSansIOProtocol, frame: bytes) -> bool:
    """Write one text frame synchronously if the socket can take it now; False otherwise."""
    conn = proto.conn
    transport = proto.transport
    if (
        not proto.writable.is_set()
        or proto.close_sent
        or conn.state is not _WsState.OPEN
        or transport.is_closing()
        or transport.get_write_buffer_size() > _WRITE_BUFFER_LIMIT
    ):
        return False
    conn.send_text(frame)
    transport.write(b"".join(conn.data_to_send()))
    return True


# -- one connection ----------------------------------------------------------------------


class _Connection(Subscriber):
    """A websocket as a hub subscriber, with its limits."""

    __slots__ = (
        "deadline",
        "ending",
        "interrupted",
        "last_seen",
        "principal",
        "proto",
        "sending",
        "socket",
        "stamp",
        "task",
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
        self.proto = proto = _sansio_protocol(socket.send)
        if proto is not None and proto.handshake_complete:
            # uvicorn keeps the handshake's Request and Response (~2 KiB measured) for
            # the connection's life but reads them only before the handshake completes.
            proto.request = proto.response = None  # type: ignore[assignment]
        self.waiting = False
        self.sending = False
        self.interrupted = False
        self.ending: CloseReason | None = None
        now = loop.time()
        self.last_seen = now
        self.tokens = float(settings.ws_rate_burst)
        self.stamp = now
        # The token's expiry on the loop clock: the connection lives no longer than its token.
        self.deadline = now + (principal.expires_at - time.time())

    def deliver(self, frame: bytes) -> bool:
        """The hub's fast path: write now, unless a write of this task is still pending."""
        proto = self.proto
        if proto is None or self.sending:
            return False
        return _write_now(proto, frame)

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

    def take_token(self, rate: float, burst: float, now: float) -> bool:
        """Token bucket of client messages: ``burst`` at once, ``rate`` per second after."""
        self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    async def flush(self) -> bool:
        """Write every queued frame. False if the write was abandoned for a dropped client.

        Each frame is written directly when the socket can take it, else through the ASGI
        ``send`` (which waits until the socket drains, and raises once the client is gone).
        """
        send = self.socket.send
        proto = self.proto
        while self.frames:
            batch, self.frames = self.frames, []
            self.sending = True
            try:
                for frame in batch:
                    if proto is None or not _write_now(proto, frame):
                        text = frame.decode()
                        await send({"type": "websocket.send", "text": text, "bytes": None})
            except asyncio.CancelledError:
                if self._was_interrupted():
                    return False
                raise
            finally:
                self.sending = False
        return True


class _Sweeper:
    """Idle and token-expiry checks for every connection of one hub, one timer per process.

    Runs every ``min(1, idle / 4)`` seconds while there are connections: a connection closes
    for idleness between ``idle`` and ``idle`` + that period after its last message, and at
    most that period after its token's expiry.
    """

    __slots__ = ("conns", "handle", "idle", "period")

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.period = min(1.0, idle / 4)
        self.conns: set[_Connection] = set()
        self.handle: asyncio.TimerHandle | None = None

    def add(self, conn: _Connection) -> None:
        self.conns.add(conn)
        if self.handle is None:
            self.handle = asyncio.get_running_loop().call_later(self.period, self._sweep)

    def discard(self, conn: _Connection) -> None:
        self.conns.discard(conn)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle_before = now - self.idle
        for conn in self.conns:
            if conn.ending is not None:
                continue
            if now >= conn.deadline:
                conn.ending = "token_expired"
            elif conn.last_seen <= idle_before:
                conn.ending = "idle"
            else:
                continue
            conn.wake()
        self.handle = loop.call_later(self.period, self._sweep) if self.conns else None


_sweepers: weakref.WeakKeyDictionary[Hub, _Sweeper] = weakref.WeakKeyDictionary()


def _sweeper(hub: Hub, settings: Settings) -> _Sweeper:
    sweeper = _sweepers.get(hub)
    if sweeper is None:
        sweeper = _sweepers[hub] = _Sweeper(float(settings.ws_idle_seconds))
    return sweeper


# -- metrics -----------------------------------------------------------------------------


class _Stats:
    """Process-wide counters of this module (read by :class:`_RealtimeCollector`)."""

    __slots__ = ("without_direct",)

    def __init__(self) -> None:
        self.without_direct = 0
        """Connections served without the direct-write path (no uvicorn sansio protocol)."""


_stats = _Stats()


class _RealtimeCollector:
    """Prometheus collector reading the hubs' counters at scrape time (no per-frame cost)."""

    def __init__(self) -> None:
        self.hubs: weakref.WeakSet[Hub] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        hubs = list(self.hubs)
        connections = GaugeMetricFamily(
            "healthmed_ws_connections", "Authenticated websocket connections in this process"
        )
        connections.add_metric([], sum(h.subscriber_count for h in hubs))
        yield connections
        events = CounterMetricFamily(
            "healthmed_ws_events", "Event frames received from Redis pub/sub"
        )
        events.add_metric([], sum(h.frames_in for h in hubs))
        yield events
        frames = CounterMetricFamily(
            "healthmed_ws_frames",
            "Event frames handed to websocket clients: written directly during the fan-out, "
            "or queued for the connection's task",
            labels=["path"],
        )
        frames.add_metric(["direct"], sum(h.delivered_direct for h in hubs))
        frames.add_metric(["queued"], sum(h.delivered_queued for h in hubs))
        yield frames
        slow = CounterMetricFamily(
            "healthmed_ws_dropped_slow", "Connections closed because their send queue was full"
        )
        slow.add_metric([], sum(h.dropped_slow for h in hubs))
        yield slow
        without = CounterMetricFamily(
            "healthmed_ws_without_direct_write",
            "Connections served without the direct-write path (not uvicorn websockets-sansio)",
        )
        without.add_metric([], _stats.without_direct)
        yield without


_collector = _RealtimeCollector()
REGISTRY.register(_collector)


def track_metrics(hub: Hub) -> None:
    """Include ``hub``'s counters in ``/metrics`` (for as long as it lives)."""
    _collector.hubs.add(hub)


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


def _handle(
    conn: _Connection, hub: Hub, message: ClientMessage | Error, settings: Settings
) -> bytes:
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
    receive = conn.socket.receive
    rate, burst = float(settings.ws_rate_per_second), float(settings.ws_rate_burst)
    while True:
        if conn.frames and not await conn.flush():
            return  # dropped while blocked on a write: the server closes the transport
        reason = conn.dropped or conn.ending
        if reason is not None:
            await _close(conn.socket, *_CLOSES[reason])
            return
        # Wait for a client message; the hub or the sweep interrupt this wait (wake()).
        # Inline rather than a method: one coroutine frame less per idle connection.
        conn.waiting = True
        try:
            event = await receive()
        except asyncio.CancelledError:
            conn.waiting = False
            if conn._was_interrupted():
                continue
            raise
        conn.waiting = False
        if event["type"] != "websocket.receive":
            return
        _on_message(conn, hub, dict(event), settings, loop.time(), rate, burst)
        del event  # not kept alive in this frame while the connection idles


def _on_message(
    conn: _Connection,
    hub: Hub,
    event: dict[str, Any],
    settings: Settings,
    now: float,
    rate: float,
    burst: float,
) -> None:
    """One client message: rate limit, apply, reply (directly when nothing is queued)."""
    conn.last_seen = now
    if not conn.take_token(rate, burst, now):
        conn.ending = "rate_limited"
        return
    reply = _handle(conn, hub, _decode(event, settings.ws_max_message_bytes), settings)
    if conn.dropped is None and (conn.frames or not conn.deliver(reply)):
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

**Limits and closes.** A message over 64 KiB closes the connection with 1009 (between
4096 bytes and 64 KiB it is answered with `bad_message`). 10 messages/s (burst 60), else
close 4429. No client message for
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
        if conn.proto is None:
            _stats.without_direct += 1
        sweeper = _sweeper(hub, settings)
        try:
            hub.attach(conn)
            sweeper.add(conn)
            private = private_topic(principal)
            hub.subscribe(conn, private)
            ready = Ready(role=principal.role, user_id=principal.user_id, topics=[private])
            conn.frames.append(_text(ready))
            await _serve(conn, hub, settings)
        finally:
            sweeper.discard(conn)
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

__all__ = [
    "ClientMessage",
    "ServerMessage",
    "close_code",
    "route_handlers",
    "topic_error",
    "track_metrics",
]
