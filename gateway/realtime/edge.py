"""``GET /v1/ws``: the websocket edge, an asyncio protocol that uvicorn runs after the upgrade.

``healthmed serve`` hands uvicorn this class as its websocket implementation (``ws=``):
when an HTTP request upgrades, uvicorn's HTTP protocol builds a :class:`RealtimeProtocol`,
gives it the socket and the request, and steps aside. Everything after that happens here, in
callbacks on the event loop, with websockets' Sans-I/O ``ServerProtocol`` for the handshake,
frame parsing and control frames. The ASGI app (Litestar) never sees websocket traffic; it
only answers a plain ``GET /v1/ws`` with 426 and documents the protocol.

Why not an ASGI handler (what this replaced, with the measurements in ``loadtest/README.md``):
an ASGI websocket keeps, for its whole life, a task running the handler and its coroutine
frames, the server's receive queue and events, the scope and the framework's connection
object. At 20,000 idle connections that was 24 KiB a connection against 14.4-14.9 KiB for a
bare ``websockets`` broadcast server. Here an idle connection is this object, websockets'
``ServerProtocol`` and uvloop's transport: no task, queue, timer or future.

One connection, in order:

1. **Handshake** (:meth:`RealtimeProtocol._on_request`): only ``/v1/ws``; 503 while the app
   is not started (or already stopped), and 503 with ``Retry-After`` while the hub has no
   live Redis subscription (degraded mode: no event could reach the client), else
   websockets' own checks (400/426...) and 101.
   No extensions are offered, so no permessage-deflate (its state is ~32 KiB a connection).
2. **Auth**: the first message must be ``auth`` within ``ws_auth_seconds`` (a timer, released
   after auth), else 4401. The token check may wait on Redis, so it runs in a short task
   while reading is paused; messages that arrived with it are applied after ``ready``.
3. **Messages**: ``subscribe``, ``unsubscribe`` and ``ping`` are applied synchronously and
   answered at once. Each costs a token of a bucket (``ws_rate_burst``, refilled at
   ``ws_rate_per_second``); an empty bucket closes 4429. Over ``ws_max_message_bytes`` is a
   ``bad_message`` error; over uvicorn's ``ws_max_size`` (a whole message, fragments summed)
   websockets fails the connection with 1009 before buffering more, and so does this module
   past ``MAX_FRAGMENTS`` frames. Messages are JSON in text frames: a binary frame is a
   ``bad_message``, text that is not UTF-8 fails the connection (1007; websockets' parser
   does not check data frames). Protocol pings are answered by websockets and cost a token.
4. **Events** reach :meth:`deliver` from the hub's fan-out. The text frame is built once per
   event (:func:`_wire`; server frames are not masked, so every client gets the same bytes)
   and written to every transport that is not paused. A paused one (uvloop pauses above its
   64 KiB write high-water mark) gets the frame queued by the hub and written out on
   :meth:`resume_writing`; when the queue is full the hub drops it and it closes 1013.
5. **Timeouts**: one sweep per process (``gateway/realtime/_sweep.py``) closes connections
   idle longer than ``ws_idle_seconds`` (4408) or whose token has expired or was revoked
   (4401).
6. **Close**: a close frame, then the transport closes when the client answers, or is
   aborted ``_CLOSE_TIMEOUT`` seconds later (a client that stopped reading never answers).
   uvicorn's shutdown calls :meth:`shutdown` on every connection (1001).

Catch-up after a reconnect is a resync, not a replay: events carry no sequence number, and a
client that (re)connects re-reads ``GET /v1/doctors/{id}/slots`` and ``GET /v1/appointments``
after ``ready``/``subscribed`` and applies events from then on. The same holds after a close
for slowness (1013), which is how a client learns it missed events.

The coupling to uvicorn is its documented ``ws`` option taking a protocol class, the keyword
arguments it builds the class with, and its ``server_state.connections`` set, whose members
it asks to :meth:`shutdown` and waits for. ``tests/integration/test_uvicorn_coupling.py``
checks those against the pinned uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from redis.exceptions import RedisError
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from engine.errors import EngineError, Unauthenticated
from engine.realtime import Subscriber
from gateway.logs import request_id_from
from gateway.problems import RETRY_AFTER_SECONDS
from gateway.realtime._binding import Binding, bound
from gateway.realtime.messages import (
    CLOSES,
    MAX_FRAGMENTS,
    PONG,
    Auth,
    ClientMessage,
    CloseReason,
    Error,
    Ping,
    Ready,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    close_code,
    decode,
    encode,
    is_topic,
    private_topic,
    topic_error,
    unknown_topic,
)

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from engine.config import Settings
    from engine.principal import Principal

log = logging.getLogger("healthmed.realtime")

_wire_log = logging.getLogger("healthmed.realtime.wire")
"""websockets' Sans-I/O protocol logs every open and close at INFO; kept to warnings."""
_wire_log.setLevel(logging.WARNING)

PATH = "/v1/ws"
_CLOSE_TIMEOUT = 10.0
"""Seconds a closing connection waits for the client's close frame before it is aborted."""


# -- frames ------------------------------------------------------------------------------


class _WireCache:
    """The last payload and its frame: the hub offers one payload object to every client."""

    __slots__ = ("payload", "wire")

    def __init__(self) -> None:
        self.payload: bytes | None = None
        self.wire = b""


_cache = _WireCache()


def _wire(payload: bytes) -> bytes:
    """The unmasked text frame carrying ``payload``, built once per distinct payload object."""
    if payload is _cache.payload:
        return _cache.wire
    wire = Frame(Opcode.TEXT, payload).serialize(mask=False)
    _cache.payload, _cache.wire = payload, wire
    return wire


# -- one connection ----------------------------------------------------------------------


class RealtimeProtocol(Subscriber, asyncio.Protocol):
    """One websocket connection: uvicorn's ``ws`` protocol class and a hub subscriber."""

    __slots__ = (
        "binary",
        "binding",
        "closing",
        "conn",
        "connections",
        "deadline",
        "last_seen",
        "parts",
        "paused",
        "pending",
        "principal",
        "stamp",
        "task",
        "timer",
        "tokens",
        "transport",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        Subscriber.__init__(self)
        self.binding = bound.binding
        self.connections: set[Any] = server_state.connections
        self.conn = ServerProtocol(max_size=config.ws_max_size, logger=_wire_log)
        self.transport: asyncio.Transport | None = None
        self.principal: Principal | None = None
        self.closing = False
        self.paused = False
        self.parts: list[bytes] | None = None
        """Frames of the message arriving (clients rarely fragment: usually one)."""
        self.binary = False
        self.pending: list[bytes | None] | None = None
        """Messages that arrived while the token was being checked."""
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.last_seen = self.stamp = self.deadline = 0.0
        self.tokens = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.connections.add(self)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        try:
            conn.receive_data(data)
            for event in conn.events_received():
                if isinstance(event, Frame):
                    self._on_frame(event)
                elif isinstance(event, Request):
                    self._on_request(event)
            self._write_protocol()
        except Exception:  # a bug here must cost one connection, never the loop's callback
            log.exception("realtime: websocket connection failed")
            self.closing = True
            self.release()
            if self.transport is not None:
                self.transport.abort()

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        self._write_protocol()
        return None  # asyncio closes the transport

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.frames and self.transport is not None and not self.closing:
            batch, self.frames = self.frames, []
            self.transport.write(b"".join(map(_wire, batch)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.transport = None
        self.connections.discard(self)
        self.release()

    # -- uvicorn -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """uvicorn is stopping: say so (1001) and close once the close frame is written."""
        if self.conn.state is State.OPEN:
            self.close("shutdown")
        if self.transport is not None:
            self.transport.close()

    # -- hub.Subscriber ------------------------------------------------------------------

    def deliver(self, frame: bytes) -> bool:
        """Write an event now unless the socket is backed up (then the hub queues it)."""
        transport = self.transport
        if self.paused or self.closing or transport is None:
            return False
        transport.write(_wire(frame))
        return True

    def wake(self) -> None:
        """Frames were queued (written on resume_writing), or the hub dropped us."""
        if self.dropped is not None:
            self.close(self.dropped)

    # -- handshake -----------------------------------------------------------------------

    def _on_request(self, request: Request) -> None:
        conn = self.conn
        binding = self.binding
        if unquote(request.path.partition("?")[0]) != PATH:
            response = conn.reject(404, "Not Found\n")
        elif binding is None or self.closing:
            response = conn.reject(503, "Service Unavailable: starting or stopping\n")
        elif not binding.hub.connected.is_set():
            response = conn.reject(503, "Service Unavailable: real-time events are down\n")
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        else:
            response = conn.accept(request)
        # Every response carries X-Request-ID, the handshake's too (docs/API.md "Operations").
        given = request.headers.get("X-Request-ID")
        response.headers["X-Request-ID"] = request_id_from(given.encode() if given else None)
        conn.send_response(response)
        if response.status_code != 101 or binding is None:
            return  # websockets queued the end of the stream: _write_protocol closes
        now = time.monotonic()
        self.last_seen = self.stamp = now
        self.tokens = float(binding.settings.ws_rate_burst)
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(binding.settings.ws_auth_seconds, self._auth_timeout)

    def _auth_timeout(self) -> None:
        self.timer = None
        if self.principal is None:
            self.close_with(4401, "authentication timeout: send {type: auth} first")

    # -- frames and messages -------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        if self.closing:
            return  # the rest of a batch that arrived with (or after) the end
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self.binary = opcode is Opcode.BINARY
            self.parts = [bytes(frame.data)]
            if frame.fin:
                self._on_complete()
        elif opcode is Opcode.CONT and self.parts is not None:
            self.parts.append(bytes(frame.data))
            if frame.fin:
                self._on_complete()
            elif len(self.parts) >= MAX_FRAGMENTS:
                self._fail(1009, f"more than {MAX_FRAGMENTS} fragments")
        elif opcode is Opcode.PING or opcode is Opcode.PONG:
            # websockets queued a pong for a ping (written after this batch of events). Both
            # cost a message of the rate limit: a ping flood would otherwise make the server
            # write pongs without bound to a client that need not read them.
            binding = self.binding
            spent = binding is None or self._take_token(time.monotonic(), binding.settings)
            if not spent and not self.closing:
                self.close("rate_limited")
        # CLOSE: websockets queued the closing reply.

    def _on_complete(self) -> None:
        """The last frame of a message arrived: check it is text, in UTF-8, and apply it."""
        parts, self.parts = self.parts or [], None
        if self.closing:
            return
        if self.binary:
            self._on_message(None)  # the protocol is JSON in text frames: a bad message
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        try:
            data.decode()
        except UnicodeDecodeError:  # RFC 6455 8.1: fail the connection, 1007
            self._fail(1007, "text frame is not valid UTF-8")
            return
        self._on_message(data)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the websocket (websockets sends the close frame and ends the stream)."""
        self.parts = None
        self.conn.fail(code, reason)
        self._write_protocol()

    def _on_message(self, data: bytes | None) -> None:
        """One client message (None: a binary one)."""
        binding = self.binding
        if self.closing or binding is None:
            return
        settings = binding.settings
        now = time.monotonic()
        self.last_seen = now
        if not self._take_token(now, settings):
            self.close("rate_limited")
        elif self.pending is not None:
            self.pending.append(data)  # the token is being checked: applied after ready
        elif self.principal is None:
            message = None if data is None else decode(data, settings.ws_max_message_bytes)
            if isinstance(message, Auth):
                self._start_auth(binding, message.token)
            else:
                self.close_with(4401, "the first message must be {type: auth, token}")
        else:
            self._apply(binding, data)

    def _take_token(self, now: float, settings: Settings) -> bool:
        """Token bucket of client messages: a burst at once, then a steady rate."""
        burst = float(settings.ws_rate_burst)
        refill = (now - self.stamp) * settings.ws_rate_per_second
        self.tokens = min(burst, self.tokens + refill)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def _apply(self, binding: Binding, data: bytes | None) -> None:
        """One message of an authenticated client: apply it and answer."""
        if data is None:
            message: ClientMessage | Error = Error(
                code="bad_message", detail="messages are JSON objects in text frames"
            )
        else:
            message = decode(data, binding.settings.ws_max_message_bytes)
        self.send(self._reply(binding, message))

    def _reply(self, binding: Binding, message: ClientMessage | Error) -> bytes:
        principal = self.principal
        assert principal is not None
        match message:
            case Error():
                return encode(message)
            case Ping():
                return PONG
            case Subscribe(topic=topic):
                error = topic_error(principal, topic)
                if error is not None:
                    return encode(error)
                limit = binding.settings.ws_max_topics
                if topic not in self.topics and len(self.topics) >= limit:
                    return encode(Error(code="too_many_topics", detail=f"at most {limit} topics"))
                binding.hub.subscribe(self, topic)
                return encode(Subscribed(topic=topic))
            case Unsubscribe(topic=topic):
                if not is_topic(topic):
                    return encode(unknown_topic(topic))
                binding.hub.unsubscribe(self, topic)
                return encode(Unsubscribed(topic=topic))
            case Auth():
                return encode(Error(code="already_authenticated", detail="already authenticated"))

    # -- auth ----------------------------------------------------------------------------

    def _start_auth(self, binding: Binding, token: str) -> None:
        self.pending = []
        if self.transport is not None:
            self.transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._authenticate(binding, token))

    async def _authenticate(self, binding: Binding, token: str) -> None:
        try:
            principal = await binding.engine.authenticate(token)
        except EngineError as exc:
            self.task = None
            code = exc.code if isinstance(exc, Unauthenticated) else "unavailable"
            self.close_with(close_code(exc), code)
            return
        except (RedisError, OSError) as exc:  # not a verdict on the token: try again later
            log.warning("realtime: token check failed: %s", type(exc).__name__)
            self.task = None
            self.close_with(4503, "unavailable")
            return
        except Exception:
            log.exception("realtime: token check failed")
            self.task = None
            self.close_with(1011, "internal error; reconnect")
            return
        self.task = None
        if self.closing:
            return
        try:
            self._ready(binding, principal)
        except Exception:  # a bug must cost this connection only, and not wedge it
            log.exception("realtime: websocket connection failed after auth")
            self.close_with(1011, "internal error; reconnect")

    def _ready(self, binding: Binding, principal: Principal) -> None:
        """Authenticated: join the hub and the private topic, answer ``ready``."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.principal = principal
        # The token's expiry on the monotonic clock: the connection lives no longer.
        self.deadline = time.monotonic() + (principal.expires_at - time.time())
        revocations = binding.sweeper.revocations
        if revocations.live and revocations.revoked(principal):
            # Revoked while its check waited on Redis: the sweep may have seen that already.
            self.close("token_revoked")
            return
        hub = binding.hub
        hub.attach(self)  # a closed hub drops us at once (1001)
        if self.closing:
            return
        binding.sweeper.add(self)
        private = private_topic(principal)
        hub.subscribe(self, private)
        self.send(encode(Ready(role=principal.role, user_id=principal.user_id, topics=[private])))
        pending, self.pending = self.pending or [], None
        for data in pending:
            if self.closing:
                return
            self._apply(binding, data)
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    # -- writing and closing -------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """A reply, in order with the events: written now, or queued behind them."""
        if self.closing:
            return
        if self.frames or not self.deliver(payload):
            binding = self.binding
            if binding is not None and len(self.frames) >= binding.settings.ws_queue_size:
                self.close("slow")
                return
            self.frames.append(payload)

    def _write_protocol(self) -> None:
        """Write what websockets queued (handshake, pongs, closes); close on its end of stream."""
        data = self.conn.data_to_send()
        if not data or self.transport is None:
            return
        self.transport.write(b"".join(data))
        if data[-1] == b"":  # websockets' end of stream: the server closes TCP first
            self._end()

    def _end(self) -> None:
        """The websocket is over (closing handshake done, failed, or refused): leave the hub
        and close TCP once the buffer is written, aborting if the client has not taken it
        within ``_CLOSE_TIMEOUT`` (one that stopped reading never will)."""
        self.closing = True
        self.release()
        if self.transport is not None:
            self.transport.close()
            self.timer = asyncio.get_running_loop().call_later(_CLOSE_TIMEOUT, self._abort)

    def close(self, reason: CloseReason) -> None:
        self.close_with(*CLOSES[reason])

    def close_with(self, code: int, reason: str) -> None:
        """Start the closing handshake (once); the transport closes when it completes."""
        if self.closing:
            return
        self.closing = True
        reading_paused = self.pending is not None  # paused while the token was checked
        self.release()
        if self.conn.state is State.OPEN and self.transport is not None:
            # A close reason is at most 123 bytes of UTF-8.
            self.conn.send_close(code, reason.encode()[:123].decode(errors="ignore"))
            self._write_protocol()
            if reading_paused:
                self.transport.resume_reading()  # to read the client's closing reply
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(_CLOSE_TIMEOUT, self._abort)
        else:
            self._end()

    def _abort(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.abort()

    def release(self) -> None:
        """Leave the hub and the sweep; stop the auth timer or task. Idempotent."""
        binding = self.binding
        if binding is not None and self.principal is not None:
            binding.sweeper.discard(self)
            binding.hub.detach(self)
        self.frames = []
        self.pending = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()
            self.task = None


__all__ = ["PATH", "RealtimeProtocol"]
