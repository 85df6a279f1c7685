"""The websocket edge (gateway/realtime/edge.py) driven byte by byte through a fake transport.

The end-to-end tier (tests/e2e/test_realtime.py) runs the same protocol in the real server
over real sockets; these tests reach the orderings and timings a socket cannot be made to
produce on demand: a message pipelined behind ``auth``, a fragmented message, a transport
that pauses mid fan-out, a client that never answers a close.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis.exceptions
import uvicorn
from uvicorn.server import ServerState
from websockets.frames import Close, Frame, Opcode

from engine.accounts import Revocations
from engine.config import load_settings
from engine.errors import Unauthenticated
from engine.principal import Principal
from engine.realtime import Hub
from gateway import realtime
from gateway.realtime import edge
from gateway.realtime.edge import RealtimeProtocol
from gateway.realtime.messages import CLOSES

HANDSHAKE = (
    b"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
TOPIC = "doctor.D1.slots"


class FakeTransport:
    """What the protocol calls on a transport; records writes, pauses and the close."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


def frames_of(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of every unmasked server frame in ``data`` (after the 101)."""
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    out = []
    while rest:
        assert rest[0] & 0x80, "FIN"  # the server never fragments
        size, at = rest[1] & 0x7F, 2
        assert not rest[1] & 0x80, "server frames are not masked"
        if size == 126:
            size, at = int.from_bytes(rest[2:4], "big"), 4
        elif size == 127:
            size, at = int.from_bytes(rest[2:10], "big"), 10
        out.append((rest[0] & 0x0F, rest[at : at + size]))
        rest = rest[at + size :]
    return out


def texts(transport: FakeTransport) -> list[dict[str, Any]]:
    return [json.loads(p) for op, p in frames_of(transport.written) if op == 1]


def close_of(transport: FakeTransport) -> tuple[int, str] | None:
    closes = [p for op, p in frames_of(transport.written) if op == 8]
    if not closes:
        return None
    close = Close.parse(closes[-1])
    return close.code, close.reason


def client(message: Any, *, opcode: Opcode = Opcode.TEXT, fin: bool = True) -> bytes:
    """A masked client frame (a dict is sent as JSON)."""
    data = json.dumps(message).encode() if isinstance(message, dict) else message
    return Frame(opcode, data, fin=fin).serialize(mask=True)


class FakeEngine:
    """What the edge uses of the engine: settings, the hub, and token checks."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.hub = Hub(redis=None, queue_size=settings.ws_queue_size)  # type: ignore[arg-type]
        self.hub.connected.set()  # as if its Redis subscription were live
        self.accounts = SimpleNamespace(revocations=Revocations(redis=None))  # type: ignore[arg-type]
        self.accounts.revocations.live = True
        self.delay = 0.0
        self.checked: list[str] = []

    async def authenticate(self, token: str) -> Principal:
        self.checked.append(token)
        if self.delay:
            await asyncio.sleep(self.delay)
        if token == "redis-down":
            raise redis.exceptions.ConnectionError("refused")
        if token == "bug":
            raise RuntimeError("a bug in the token check")
        if not token.startswith("good:"):
            raise Unauthenticated("bad token", code="invalid_token")
        user = token.removeprefix("good:")
        now = int(time.time())
        return Principal(
            user_id=user, role="patient", jti=f"j-{user}", issued_at=now, expires_at=now + 600
        )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeEngine]:
    settings = load_settings(
        {
            "HEALTHMED_ENV": "test",
            "HEALTHMED_DATA_DIR": str(tmp_path),
            "HEALTHMED_WS_QUEUE_SIZE": "4",
            "HEALTHMED_WS_RATE_BURST": "5",
        }
    )
    fake = FakeEngine(settings)
    realtime.bind(fake)  # type: ignore[arg-type]
    yield fake
    realtime.unbind()


class Peer:
    """One connection: the protocol as uvicorn builds it, and its transport."""

    def __init__(self, path: str = "/v1/ws") -> None:
        config = uvicorn.Config(lambda *a: None, ws=RealtimeProtocol, ws_max_size=65536)
        self.state = ServerState()
        self.proto = RealtimeProtocol(config=config, server_state=self.state, app_state={})
        self.transport = FakeTransport()
        self.proto.connection_made(self.transport)  # type: ignore[arg-type]
        self.proto.data_received(HANDSHAKE.replace(b"{path}", path.encode()))

    def send(self, *frames: bytes) -> None:
        self.proto.data_received(b"".join(frames))

    async def ready(self, user: str = "P1") -> None:
        self.send(client({"type": "auth", "token": f"good:{user}"}))
        await settle()
        assert texts(self.transport)[0]["type"] == "ready"


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_handshake_accepts_v1_ws_only(engine: FakeEngine) -> None:
    ok = Peer()
    assert bytes(ok.transport.written).startswith(b"HTTP/1.1 101")
    assert ok.proto in ok.state.connections
    other = Peer("/v1/other")
    assert bytes(other.transport.written).startswith(b"HTTP/1.1 404")
    assert other.transport.closed


async def test_the_handshake_is_503_while_the_app_is_not_serving(engine: FakeEngine) -> None:
    realtime.unbind()
    peer = Peer()
    assert bytes(peer.transport.written).startswith(b"HTTP/1.1 503")
    assert peer.transport.closed


async def test_the_handshake_is_503_with_retry_after_while_redis_events_are_down(
    engine: FakeEngine,
) -> None:
    """Degraded mode: with no live Redis subscription no event could reach a client, so the
    upgrade is refused with 503 and Retry-After."""
    engine.hub.connected.clear()
    peer = Peer()
    head = bytes(peer.transport.written)
    assert head.startswith(b"HTTP/1.1 503")
    assert b"\r\nRetry-After: 5\r\n" in head
    assert peer.transport.closed


async def test_auth_answers_ready_and_joins_the_private_topic(engine: FakeEngine) -> None:
    peer = Peer()
    await peer.ready("P7")
    assert texts(peer.transport) == [
        {"type": "ready", "role": "patient", "user_id": "P7", "topics": ["patient.P7.appointments"]}
    ]
    assert engine.hub.subscriber_counts() == {"patient.P7.appointments": 1}
    assert peer.proto.timer is None  # the auth deadline is released


async def test_messages_pipelined_behind_auth_are_answered_after_ready_in_order(
    engine: FakeEngine,
) -> None:
    engine.delay = 0.05  # the token check waits (on Redis, in the real engine)
    peer = Peer()
    peer.send(
        client({"type": "auth", "token": "good:P1"}),
        client({"type": "subscribe", "topic": TOPIC}),
        client({"type": "ping"}),
    )
    assert not peer.transport.reading  # paused while the token is checked
    await asyncio.sleep(0.1)
    assert [m["type"] for m in texts(peer.transport)] == ["ready", "subscribed", "pong"]
    assert peer.transport.reading


async def test_a_first_message_that_is_not_auth_closes_4401(engine: FakeEngine) -> None:
    peer = Peer()
    peer.send(client({"type": "ping"}))
    assert close_of(peer.transport) == (4401, "the first message must be {type: auth, token}")
    assert engine.checked == []


async def test_a_bad_token_closes_4401_with_the_reason(engine: FakeEngine) -> None:
    peer = Peer()
    peer.send(client({"type": "auth", "token": "forged"}))
    await settle()
    assert close_of(peer.transport) == (4401, "invalid_token")
    assert peer.transport.reading  # reading again, for the client's closing reply
    assert engine.hub.subscriber_count == 0


@pytest.mark.parametrize(
    ("token", "close"),
    [("redis-down", (4503, "unavailable")), ("bug", (1011, "internal error; reconnect"))],
)
async def test_a_token_check_that_fails_closes_without_blaming_the_token(
    engine: FakeEngine, token: str, close: tuple[int, str]
) -> None:
    peer = Peer()
    peer.send(client({"type": "auth", "token": token}))
    await settle()
    assert close_of(peer.transport) == close
    assert engine.hub.subscriber_count == 0


async def test_no_auth_within_the_deadline_closes_4401(engine: FakeEngine) -> None:
    engine.settings = dataclasses.replace(engine.settings, ws_auth_seconds=0.05)
    realtime.bind(engine)  # type: ignore[arg-type]
    peer = Peer()
    await asyncio.sleep(0.1)
    code = close_of(peer.transport)
    assert code is not None
    assert code[0] == 4401


async def test_a_fragmented_message_is_assembled(engine: FakeEngine) -> None:
    peer = Peer()
    await peer.ready()
    body = json.dumps({"type": "subscribe", "topic": TOPIC}).encode()
    peer.send(
        client(body[:10], fin=False),
        client(body[10:20], opcode=Opcode.CONT, fin=False),
        Frame(Opcode.PING, b"hi").serialize(mask=True),  # control frames may interleave
        client(body[20:], opcode=Opcode.CONT),
    )
    assert texts(peer.transport)[-1] == {"type": "subscribed", "topic": TOPIC}
    assert (Opcode.PONG.value, b"hi") in frames_of(peer.transport.written)


async def test_events_are_written_at_once_and_queued_in_order_behind_a_paused_socket(
    engine: FakeEngine,
) -> None:
    a, b = Peer(), Peer()
    for peer in (a, b):
        await peer.ready()
        peer.send(client({"type": "subscribe", "topic": TOPIC}))
    event = b'{"type":"event","n":1}'
    assert engine.hub.dispatch(TOPIC, event) == 2
    b.proto.pause_writing()  # b's socket is backed up
    engine.hub.dispatch(TOPIC, b'{"type":"event","n":2}')
    b.send(client({"type": "ping"}))  # a reply queues behind the events, never ahead
    engine.hub.dispatch(TOPIC, b'{"type":"event","n":3}')
    assert [m.get("n") for m in texts(b.transport)[2:]] == [1]
    b.proto.resume_writing()
    assert [m.get("n", m["type"]) for m in texts(b.transport)[2:]] == [1, 2, "pong", 3]
    assert [m.get("n") for m in texts(a.transport)[2:]] == [1, 2, 3]
    assert engine.hub.delivered_direct == 2 + 1 + 1  # a three times, b once


async def test_a_full_queue_closes_1013_and_an_unanswered_close_is_aborted(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge, "_CLOSE_TIMEOUT", 0.05)
    slow, fast = Peer(), Peer()
    for peer in (slow, fast):
        await peer.ready()
        peer.send(client({"type": "subscribe", "topic": TOPIC}))
    slow.proto.pause_writing()
    for n in range(10):  # queue size 4
        engine.hub.dispatch(TOPIC, b'{"type":"event","n":%d}' % n)
    assert close_of(slow.transport) == (1013, CLOSES["slow"][1])
    assert engine.hub.subscriber_counts()[TOPIC] == 1  # slow left the topic
    assert [m["n"] for m in texts(fast.transport)[2:]] == list(range(10))
    assert not slow.transport.aborted
    await asyncio.sleep(0.1)
    assert slow.transport.aborted  # it never answered the close


async def test_a_client_close_is_answered_and_ends_the_connection(engine: FakeEngine) -> None:
    peer = Peer()
    await peer.ready()
    peer.send(Frame(Opcode.CLOSE, Close(1000, "bye").serialize()).serialize(mask=True))
    assert close_of(peer.transport) == (1000, "bye")
    assert peer.transport.closed
    peer.proto.connection_lost(None)
    assert engine.hub.subscriber_count == 0
    assert not peer.state.connections


async def test_the_burst_is_answered_and_one_more_message_closes_4429(
    engine: FakeEngine,
) -> None:
    peer = Peer()
    await peer.ready()  # 1 of the burst of 5
    peer.send(*[client({"type": "ping"})] * 4)
    assert [m["type"] for m in texts(peer.transport)] == ["ready"] + ["pong"] * 4
    assert close_of(peer.transport) is None
    peer.send(client({"type": "ping"}))
    assert close_of(peer.transport) == (4429, "too many messages")


async def test_a_message_over_the_size_limit_fails_with_1009(engine: FakeEngine) -> None:
    peer = Peer()
    await peer.ready()
    peer.send(client(b"x" * 70_000))
    assert close_of(peer.transport) is not None
    code = close_of(peer.transport)
    assert code is not None
    assert code[0] == 1009
    assert peer.transport.closed


async def test_uvicorn_shutdown_closes_1001(engine: FakeEngine) -> None:
    peer = Peer()
    await peer.ready()
    peer.proto.shutdown()
    assert close_of(peer.transport) == (1001, CLOSES["shutdown"][1])
    assert peer.transport.closed


async def test_a_failure_inside_the_protocol_costs_only_that_connection(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad, good = Peer(), Peer()
    for peer in (bad, good):
        await peer.ready()
        peer.send(client({"type": "subscribe", "topic": TOPIC}))

    on_message = RealtimeProtocol._on_message

    def buggy(self: RealtimeProtocol, data: bytes) -> None:
        if self is bad.proto:
            raise RuntimeError("bug")
        on_message(self, data)

    monkeypatch.setattr(RealtimeProtocol, "_on_message", buggy)
    bad.send(client({"type": "ping"}))
    assert bad.transport.aborted
    engine.hub.dispatch(TOPIC, b'{"type":"event","n":0}')
    assert texts(good.transport)[-1] == {"type": "event", "n": 0}


async def test_a_token_revoked_after_auth_closes_its_connection_at_the_next_sweep(
    engine: FakeEngine,
) -> None:
    """Logout or erasure elsewhere: the revoked session's websocket closes 4401; others stay."""
    engine.settings = dataclasses.replace(engine.settings, ws_idle_seconds=1)  # sweep: 0.25 s
    realtime.bind(engine)  # type: ignore[arg-type]
    revoked, other = Peer(), Peer()
    await revoked.ready("P-out")
    await other.ready("P-stays")
    until = int(time.time() * 1000) + 600_000
    engine.accounts.revocations.add("jti|j-P-out|1", until)
    await asyncio.sleep(0.4)
    assert close_of(revoked.transport) == (4401, CLOSES["token_revoked"][1])
    assert close_of(other.transport) is None
    other.send(client({"type": "ping"}))
    assert texts(other.transport)[-1] == {"type": "pong"}


async def test_a_ping_flood_is_rate_limited_like_messages(engine: FakeEngine) -> None:
    """Protocol pings are answered, but each costs a message: a flood closes 4429."""
    peer = Peer()
    await peer.ready()  # 1 of the burst of 5
    peer.send(*[Frame(Opcode.PING, b"p").serialize(mask=True)] * 4)
    pongs = [p for op, p in frames_of(peer.transport.written) if op == Opcode.PONG.value]
    assert pongs == [b"p"] * 4
    assert close_of(peer.transport) is None
    peer.send(Frame(Opcode.PING, b"p").serialize(mask=True))
    assert close_of(peer.transport) == (4429, "too many messages")


@pytest.mark.parametrize("ending", ["client close", "protocol error"])
async def test_a_backed_up_connection_that_ends_leaves_the_hub_and_is_aborted(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    """The client closes (or breaks the protocol) while its socket is backed up: it leaves
    the hub at once, and TCP is aborted if the buffered bytes are never taken."""
    monkeypatch.setattr(edge, "_CLOSE_TIMEOUT", 0.05)
    peer = Peer()
    await peer.ready()
    peer.send(client({"type": "subscribe", "topic": TOPIC}))
    peer.proto.pause_writing()
    engine.hub.dispatch(TOPIC, b'{"type":"event","n":1}')
    if ending == "client close":
        peer.send(Frame(Opcode.CLOSE, Close(1000, "bye").serialize()).serialize(mask=True))
    else:
        peer.send(Frame(Opcode.TEXT, b"{}").serialize(mask=False))  # clients must mask: 1002
    assert peer.transport.closed
    assert engine.hub.subscriber_count == 0
    assert not peer.transport.aborted
    await asyncio.sleep(0.1)
    assert peer.transport.aborted


async def test_invalid_utf8_in_a_text_frame_fails_the_connection_1007(engine: FakeEngine) -> None:
    """RFC 6455 8.1; websockets' parser leaves text frames unchecked, so the edge checks."""
    peer = Peer()
    await peer.ready()
    peer.send(client(b'{"type":"ping","x":"\xff"}'))
    code = close_of(peer.transport)
    assert code is not None
    assert code[0] == 1007
    assert peer.transport.closed
    assert engine.hub.subscriber_count == 0
    first = Peer()  # the same as a first message: no token check is even attempted
    first.send(client(b'{"type":"auth","token":"\xc3"}'))
    code = close_of(first.transport)
    assert code is not None
    assert code[0] == 1007
    assert engine.checked == ["good:P1"]


async def test_binary_frames_are_bad_messages(engine: FakeEngine) -> None:
    """Messages are JSON in text frames: a binary one (even of valid JSON) is answered with
    bad_message, and as a first message it is not auth (4401)."""
    peer = Peer()
    await peer.ready()
    peer.send(client(b'{"type":"ping"}', opcode=Opcode.BINARY))
    assert texts(peer.transport)[-1] == {
        "type": "error",
        "code": "bad_message",
        "detail": "messages are JSON objects in text frames",
    }
    peer.send(client(b""))  # an empty text message is malformed JSON, not a binary one
    assert texts(peer.transport)[-1] == {
        "type": "error",
        "code": "bad_message",
        "detail": "malformed JSON",
    }
    first = Peer()
    auth = json.dumps({"type": "auth", "token": "good:P2"}).encode()
    first.send(client(auth, opcode=Opcode.BINARY))
    code = close_of(first.transport)
    assert code is not None
    assert code[0] == 4401


async def test_a_message_in_too_many_fragments_fails_with_1009(engine: FakeEngine) -> None:
    """Empty continuation frames cost no bytes; their number is bounded instead."""
    peer = Peer()
    await peer.ready()
    peer.send(client(b"{", fin=False), *[client(b"", opcode=Opcode.CONT, fin=False)] * 40)
    code = close_of(peer.transport)
    assert code is not None
    assert code[0] == 1009
    assert peer.proto.parts is None or len(peer.proto.parts) <= edge.MAX_FRAGMENTS
    assert engine.hub.subscriber_count == 0


async def test_a_message_in_a_few_fragments_is_fine(engine: FakeEngine) -> None:
    peer = Peer()
    await peer.ready()
    body = json.dumps({"type": "subscribe", "topic": TOPIC}).encode()
    chunks = [body[i : i + 4] for i in range(0, len(body), 4)]
    assert 1 < len(chunks) < edge.MAX_FRAGMENTS
    frames = [client(chunks[0], fin=False)]
    frames += [client(c, opcode=Opcode.CONT, fin=False) for c in chunks[1:-1]]
    frames.append(client(chunks[-1], opcode=Opcode.CONT))
    peer.send(*frames)
    assert texts(peer.transport)[-1] == {"type": "subscribed", "topic": TOPIC}


async def test_a_token_revoked_while_its_check_waited_is_refused_at_ready(
    engine: FakeEngine,
) -> None:
    """The revocation lands while the token check waits (on Redis): the connection closes
    4401 instead of becoming ready, whatever the sweep saw meanwhile."""
    engine.delay = 0.05
    peer = Peer()
    peer.send(client({"type": "auth", "token": "good:P-late"}))
    engine.accounts.revocations.add("jti|j-P-late|1", int(time.time() * 1000) + 600_000)
    await asyncio.sleep(0.1)
    assert close_of(peer.transport) == (4401, CLOSES["token_revoked"][1])
    assert texts(peer.transport) == []
    assert engine.hub.subscriber_count == 0
