"""GET /v1/ws end to end: the real server process on its own real redis-server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e._accounts import login_doctor, login_patient, register_doctor, register_patient
from tests.support import RedisServer, ServerProcess, free_port, timeout

QUEUE_SIZE = 16


@pytest.fixture(scope="module")
def rt_server(
    module_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The server with a 1 s auth deadline and a 16-frame send queue (fast to exercise)."""
    proc = ServerProcess(
        port=free_port(),
        data_dir=Path(tmp_path_factory.mktemp("rt")),
        env={
            "HEALTHMED_REDIS_URL": module_redis.url,
            "HEALTHMED_ENV": "test",
            "HEALTHMED_WS_AUTH_SECONDS": "1",
            "HEALTHMED_WS_QUEUE_SIZE": str(QUEUE_SIZE),
        },
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def rt_http(rt_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rt_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def publisher(module_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(module_redis.url)
    yield client
    client.close()


def secret_of(server: ServerProcess) -> str:
    return (server.data_dir / "secrets" / "jwt_secret").read_text().strip()


def forge(secret: str, sub: str, role: str, *, exp_in: int = 900) -> str:
    """An access token as engine/accounts/tokens.py issues it, signed with ``secret``."""
    now = int(time.time())
    claims = {
        "iss": "healthmed",
        "aud": "healthmed-api",
        "sub": sub,
        "role": role,
        "iat": now,
        "exp": now + exp_in,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def envelope(topic: str, event: str, data: Any) -> bytes:
    frame = {
        "type": "event",
        "topic": topic,
        "event": event,
        "data": data,
        "at": "2026-01-01T00:00:00Z",
    }
    return json.dumps(frame).encode()


async def recv_json(ws: ClientConnection, seconds: float = 5) -> dict[str, Any]:
    async with asyncio.timeout(timeout(seconds)):
        return dict(json.loads(await ws.recv()))


async def send_json(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def close_code(ws: ClientConnection, seconds: float = 5) -> int | None:
    """Read until the server closes; the close code it sent (None if it sent no close frame)."""
    async with asyncio.timeout(timeout(seconds)):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None


class Client:
    """An authenticated websocket client."""

    def __init__(self, ws: ClientConnection, ready: dict[str, Any]) -> None:
        self.ws = ws
        self.ready = ready

    async def subscribe(self, topic: str) -> dict[str, Any]:
        await send_json(self.ws, {"type": "subscribe", "topic": topic})
        return await recv_json(self.ws)


@pytest.fixture
async def open_client() -> AsyncIterator[Callable[..., Any]]:
    opened: list[ClientConnection] = []

    async def open_(server: ServerProcess, token: str, **kwargs: Any) -> Client:
        ws = await connect(server.ws_url, **kwargs)
        opened.append(ws)
        await send_json(ws, {"type": "auth", "token": token})
        ready = await recv_json(ws)
        assert ready["type"] == "ready", ready
        return Client(ws, ready)

    yield open_
    for ws in opened:
        await ws.close()


# -- authentication -------------------------------------------------------------------


async def test_no_auth_message_within_the_deadline_closes_4401(rt_server: ServerProcess) -> None:
    """A client that says nothing is closed with 4401 once ws_auth_seconds (1 s here) pass."""
    async with connect(rt_server.ws_url) as ws:
        started = time.monotonic()
        assert await close_code(ws) == 4401
        assert 0.9 <= time.monotonic() - started < timeout(4)


@pytest.mark.parametrize(
    "first",
    [
        pytest.param({"type": "subscribe", "topic": "doctor.X.slots"}, id="subscribe"),
        pytest.param({"type": "ping"}, id="ping"),
        pytest.param({"type": "auth"}, id="auth-without-token"),
        pytest.param("{not json", id="malformed"),
    ],
)
async def test_a_first_message_that_is_not_auth_closes_4401(
    rt_server: ServerProcess, first: dict[str, Any] | str
) -> None:
    """Anything but {type: auth, token} as the first message closes with 4401."""
    async with connect(rt_server.ws_url) as ws:
        await ws.send(first if isinstance(first, str) else json.dumps(first))
        assert await close_code(ws) == 4401


async def test_a_bad_token_closes_4401(rt_server: ServerProcess) -> None:
    """A token that is not a valid JWT of this server closes with 4401."""
    for token in [
        "garbage",
        forge("another-secret-that-is-long-enough-0123456789", "u", "patient"),
    ]:
        async with connect(rt_server.ws_url) as ws:
            await send_json(ws, {"type": "auth", "token": token})
            assert await close_code(ws) == 4401


async def test_an_expired_token_closes_4401(rt_server: ServerProcess) -> None:
    """A correctly signed token past its exp closes with 4401."""
    token = forge(secret_of(rt_server), "P-expired", "patient", exp_in=-10)
    async with connect(rt_server.ws_url) as ws:
        await send_json(ws, {"type": "auth", "token": token})
        assert await close_code(ws) == 4401


async def test_a_revoked_token_closes_4401(rt_server: ServerProcess, rt_http: httpx.Client) -> None:
    """After logout the access token no longer opens a websocket."""
    n = int(uuid.uuid4().int % 10**8)
    pair = login_patient(rt_http, register_patient(rt_http, n))
    r = rt_http.post(
        "/v1/auth/logout",
        json={"refresh_token": pair["refresh_token"]},
        headers={"Authorization": f"Bearer {pair['access_token']}"},
    )
    assert r.status_code == 204, r.text
    async with connect(rt_server.ws_url) as ws:
        await send_json(ws, {"type": "auth", "token": pair["access_token"]})
        assert await close_code(ws) == 4401


async def test_logging_out_closes_the_sessions_open_websocket(
    rt_server: ServerProcess, rt_http: httpx.Client
) -> None:
    """A websocket already open with a token closes 4401 once that token is revoked;
    another session of the same patient (another login) stays open."""
    n = int(uuid.uuid4().int % 10**8)
    registered = register_patient(rt_http, n)
    out, stays = login_patient(rt_http, registered), login_patient(rt_http, registered)
    async with connect(rt_server.ws_url) as ws_out, connect(rt_server.ws_url) as ws_stays:
        for ws, pair in ((ws_out, out), (ws_stays, stays)):
            await send_json(ws, {"type": "auth", "token": pair["access_token"]})
            assert (await recv_json(ws))["type"] == "ready"
        r = rt_http.post(
            "/v1/auth/logout",
            json={"refresh_token": out["refresh_token"]},
            headers={"Authorization": f"Bearer {out['access_token']}"},
        )
        assert r.status_code == 204, r.text
        assert await close_code(ws_out, seconds=5) == 4401
        await send_json(ws_stays, {"type": "ping"})
        assert await recv_json(ws_stays) == {"type": "pong"}


async def test_the_connection_closes_4401_when_its_token_expires(
    rt_server: ServerProcess, open_client: Callable[..., Any]
) -> None:
    """A connection lives no longer than its token: at exp the server closes with 4401."""
    client = await open_client(
        rt_server, forge(secret_of(rt_server), "P-short", "patient", exp_in=2)
    )
    assert await close_code(client.ws, seconds=6) == 4401


# -- ready and topics -----------------------------------------------------------------


async def test_ready_names_the_role_and_the_private_topic(
    rt_server: ServerProcess,
    rt_http: httpx.Client,
    open_client: Callable[..., Any],
    unique: Callable[[], int],
) -> None:
    """ready carries role, user_id and the private topic joined automatically."""
    doctor = register_doctor(rt_http, unique())
    patient = register_patient(rt_http, unique())
    d = await open_client(rt_server, login_doctor(rt_http, doctor)["access_token"])
    p = await open_client(rt_server, login_patient(rt_http, patient)["access_token"])
    assert d.ready == {
        "type": "ready",
        "role": "doctor",
        "user_id": doctor["id"],
        "topics": [f"doctor.{doctor['id']}.appointments"],
    }
    assert p.ready == {
        "type": "ready",
        "role": "patient",
        "user_id": patient["id"],
        "topics": [f"patient.{patient['id']}.appointments"],
    }


async def test_private_topics_of_others_are_forbidden_and_slots_are_open(
    rt_server: ServerProcess, open_client: Callable[..., Any]
) -> None:
    """forbidden_topic for another user's private topic; any doctor's slots are allowed."""
    secret = secret_of(rt_server)
    p = await open_client(rt_server, forge(secret, "P1", "patient"))
    d = await open_client(rt_server, forge(secret, "D1", "doctor"))
    for client, topic in [
        (p, "patient.P2.appointments"),
        (p, "doctor.D1.appointments"),
        (d, "doctor.D2.appointments"),
        (d, "patient.P1.appointments"),
    ]:
        reply = await client.subscribe(topic)
        assert reply["type"] == "error"
        assert reply["code"] == "forbidden_topic"
    assert await p.subscribe("doctor.D1.slots") == {
        "type": "subscribed",
        "topic": "doctor.D1.slots",
    }
    assert await d.subscribe("doctor.D1.appointments") == {
        "type": "subscribed",
        "topic": "doctor.D1.appointments",
    }
    for bad in [
        "",
        "doctor",
        "doctor.D1",
        "doctor.D1.nope",
        "patient.P1.slots",
        "doctor..slots",
        "doctor.D1.slots.extra",
        "x" * 300,
    ]:
        reply = await p.subscribe(bad)
        assert reply["code"] == "unknown_topic", bad
    await send_json(p.ws, {"type": "unsubscribe", "topic": "doctor.D1.slots"})
    assert await recv_json(p.ws) == {"type": "unsubscribed", "topic": "doctor.D1.slots"}


async def test_more_topics_than_the_limit_is_refused(
    rt_server: ServerProcess, open_client: Callable[..., Any]
) -> None:
    """The 51st topic (the private one counts) gets too_many_topics; others keep working."""
    c = await open_client(rt_server, forge(secret_of(rt_server), "P-many", "patient"))
    for n in range(49):
        assert (await c.subscribe(f"doctor.D{n}.slots"))["type"] == "subscribed"
    reply = await c.subscribe("doctor.Dlast.slots")
    assert reply["code"] == "too_many_topics"
    assert (await c.subscribe("doctor.D0.slots"))["type"] == "subscribed"


# -- bad input and protection ----------------------------------------------------------


async def test_oversized_and_malformed_messages_get_errors_and_spare_other_clients(
    rt_server: ServerProcess, open_client: Callable[..., Any], publisher: redis.Redis
) -> None:
    """bad_message for oversized, malformed and unknown messages; another client is unaffected."""
    secret = secret_of(rt_server)
    noisy = await open_client(rt_server, forge(secret, "P-noisy", "patient"))
    quiet = await open_client(rt_server, forge(secret, "P-quiet", "patient"))
    assert (await quiet.subscribe("doctor.DQ.slots"))["type"] == "subscribed"

    for bad in [
        json.dumps({"type": "ping", "pad": "x" * 5000}),
        "y" * (60 * 1024),
        "{not json",
        json.dumps({"type": "shout"}),
        json.dumps({"type": "subscribe"}),
        json.dumps([1, 2]),
        b"\x00\xff binary junk",
    ]:
        await noisy.ws.send(bad)
        started = time.monotonic()
        publisher.publish(
            "hm:t:doctor.DQ.slots", envelope("doctor.DQ.slots", "slot.updated", {"n": 1})
        )
        reply = await recv_json(noisy.ws)
        assert reply["type"] == "error"
        assert reply["code"] == "bad_message"
        event = await recv_json(quiet.ws)
        assert event["event"] == "slot.updated"
        assert time.monotonic() - started < timeout(1)
    await send_json(noisy.ws, {"type": "ping"})
    assert await recv_json(noisy.ws) == {"type": "pong"}


async def test_a_message_over_64_kib_closes_only_that_client(
    rt_server: ServerProcess, open_client: Callable[..., Any], publisher: redis.Redis
) -> None:
    """Past 64 KiB the server stops reading and closes with 1009; other clients carry on."""
    secret = secret_of(rt_server)
    big = await open_client(rt_server, forge(secret, "P-big", "patient"))
    quiet = await open_client(rt_server, forge(secret, "P-quiet2", "patient"))
    assert (await quiet.subscribe("doctor.DQ2.slots"))["type"] == "subscribed"
    await big.ws.send("y" * (1024 * 1024))
    assert await close_code(big.ws) == 1009
    publisher.publish("hm:t:doctor.DQ2.slots", envelope("doctor.DQ2.slots", "slot.updated", {}))
    assert (await recv_json(quiet.ws))["event"] == "slot.updated"


async def test_a_client_flooding_messages_is_closed_4429(
    rt_server: ServerProcess, open_client: Callable[..., Any]
) -> None:
    """Past the burst (60) at 10 messages/s, the server closes with 4429."""
    c = await open_client(rt_server, forge(secret_of(rt_server), "P-flood", "patient"))
    for _ in range(200):
        try:
            await send_json(c.ws, {"type": "ping"})
        except ConnectionClosed:
            break
    assert await close_code(c.ws) == 4429


async def test_an_idle_client_is_closed_4408(
    start_server: Callable[..., ServerProcess], module_redis: RedisServer
) -> None:
    """No client message for ws_idle_seconds (2 s here) closes with 4408; pings keep it open."""
    server = start_server(HEALTHMED_REDIS_URL=module_redis.url, HEALTHMED_WS_IDLE_SECONDS="2")
    token = forge(secret_of(server), "P-idle", "patient")
    async with connect(server.ws_url) as pinging, connect(server.ws_url) as idle:
        for ws in (pinging, idle):
            await send_json(ws, {"type": "auth", "token": token})
            assert (await recv_json(ws))["type"] == "ready"
        for _ in range(5):
            await asyncio.sleep(0.8)
            await send_json(pinging, {"type": "ping"})
            assert await recv_json(pinging) == {"type": "pong"}
        assert await close_code(idle) == 4408


async def test_shutdown_closes_websockets_with_a_close_frame(
    start_server: Callable[..., ServerProcess], module_redis: RedisServer
) -> None:
    """Stopping the server closes open websockets cleanly, with 1001 (going away)."""
    server = start_server(HEALTHMED_REDIS_URL=module_redis.url)
    async with connect(server.ws_url) as ws:
        await send_json(ws, {"type": "auth", "token": forge(secret_of(server), "P-s", "patient")})
        assert (await recv_json(ws))["type"] == "ready"
        await asyncio.to_thread(server.stop)
        assert await close_code(ws) == 1001


# -- delivery -------------------------------------------------------------------------


class RawClient:
    """A hand-rolled websocket client on a blocking socket with a tiny receive buffer.

    Client libraries read ahead into their own memory; this one reads only when told to, so
    when it stops reading, the server's writes really back up.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(timeout(5))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_json(self, message: dict[str, Any]) -> None:
        data, mask = json.dumps(message).encode(), os.urandom(4)
        assert len(data) < 65536
        size = (
            bytes([0x80 | len(data)])
            if len(data) < 126
            else bytes([0xFE]) + len(data).to_bytes(2, "big")
        )
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(b"\x81" + size + mask + masked)

    def _read(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next frame, or None at EOF."""
        head = self._read(2)
        if head is None:
            return None
        size = head[1] & 0x7F
        if size >= 126:
            ext = self._read(2 if size == 126 else 8)
            assert ext is not None
            size = int.from_bytes(ext, "big")
        payload = self._read(size)
        return None if payload is None else (head[0] & 0x0F, payload)

    def recv_json(self) -> dict[str, Any]:
        frame = self.recv()
        assert frame is not None
        assert frame[0] == 1, frame
        return dict(json.loads(frame[1]))


def drain(client: RawClient) -> tuple[list[int], int | None]:
    """The event numbers the server still had for ``client`` up to the end of the stream,
    and the close code that ended it (None if the stream ended without a close frame)."""
    received = []
    while (frame := client.recv()) is not None and frame[0] == 1:
        received.append(json.loads(frame[1])["data"]["n"])
    if frame is None or frame[0] != 8:
        return received, None
    return received, int.from_bytes(frame[1][:2], "big")


async def test_a_slow_client_is_closed_and_never_delays_the_others(
    rt_server: ServerProcess, open_client: Callable[..., Any], publisher: redis.Redis
) -> None:
    """A client that stops reading is dropped; another client gets every event promptly."""
    secret = secret_of(rt_server)
    topic = "doctor.DSLOW.slots"
    fast = await open_client(rt_server, forge(secret, "P-fast", "patient"))
    assert (await fast.subscribe(topic))["type"] == "subscribed"
    slow = RawClient(rt_server.port)
    slow.send_json({"type": "auth", "token": forge(secret, "P-slow", "patient")})
    assert slow.recv_json()["type"] == "ready"
    slow.send_json({"type": "subscribe", "topic": topic})
    assert slow.recv_json()["type"] == "subscribed"

    total, pad = 300, "x" * 32_000  # ~9.6 MB: more than the kernel buffers hold
    sent_at: dict[int, float] = {}
    latencies: list[float] = []

    async def read_fast() -> None:
        while len(latencies) < total:
            event = await recv_json(fast.ws, seconds=10)
            n = event["data"]["n"]
            assert n == len(latencies)
            latencies.append(time.monotonic() - sent_at[n])

    reader = asyncio.create_task(read_fast())
    for n in range(total):
        sent_at[n] = time.monotonic()
        publisher.publish("hm:t:" + topic, envelope(topic, "slot.updated", {"n": n, "pad": pad}))
        if n % 10 == 9:
            await asyncio.sleep(0.01)
    await reader
    assert max(latencies) < timeout(1.0), max(latencies)

    received, end = await asyncio.to_thread(drain, slow)
    assert 0 < len(received) < total
    assert received == list(range(len(received)))
    assert end == 1013  # told it was dropped, with a close frame


def ws_metrics(server: ServerProcess) -> dict[str, float]:
    """The healthmed_ws_* samples of the server's /metrics, by name and labels."""
    text = httpx.get(server.url + "/metrics", timeout=timeout(10)).text
    return {
        m[1]: float(m[2])
        for m in re.finditer(r"^(healthmed_ws_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", text, re.M)
    }


async def test_events_are_written_directly_and_a_backed_up_client_falls_back_to_its_queue(
    start_server: Callable[..., ServerProcess],
    module_redis: RedisServer,
    open_client: Callable[..., Any],
    publisher: redis.Redis,
) -> None:
    """The real server takes the direct-write fast path for a client that reads, and the
    queue (then the 1013 close) for one whose socket is backed up; order holds on both."""
    server = start_server(
        HEALTHMED_REDIS_URL=module_redis.url, HEALTHMED_WS_QUEUE_SIZE=str(QUEUE_SIZE)
    )
    secret = secret_of(server)
    topic = "doctor.DDIRECT.slots"
    fast = await open_client(server, forge(secret, "P-direct", "patient"))
    assert (await fast.subscribe(topic))["type"] == "subscribed"

    for n in range(20):
        publisher.publish("hm:t:" + topic, envelope(topic, "slot.updated", {"n": n}))
    for n in range(20):
        assert (await recv_json(fast.ws))["data"] == {"n": n}
    m = ws_metrics(server)
    assert m['healthmed_ws_frames_total{path="direct"}'] == 20
    assert m['healthmed_ws_frames_total{path="queued"}'] == 0
    assert m["healthmed_ws_connections"] == 1

    slow = RawClient(server.port)  # stops reading: its socket backs up
    slow.send_json({"type": "auth", "token": forge(secret, "P-backed-up", "patient")})
    assert slow.recv_json()["type"] == "ready"
    slow.send_json({"type": "subscribe", "topic": topic})
    assert slow.recv_json()["type"] == "subscribed"
    total, pad = 300, "x" * 32_000

    async def read_fast() -> None:
        for n in range(total):
            assert (await recv_json(fast.ws, seconds=10))["data"]["n"] == n

    reader = asyncio.create_task(read_fast())
    for n in range(total):
        publisher.publish("hm:t:" + topic, envelope(topic, "slot.updated", {"n": n, "p": pad}))
        if n % 10 == 9:
            await asyncio.sleep(0.01)  # let the reading client read
    await reader

    m = ws_metrics(server)
    assert m['healthmed_ws_frames_total{path="direct"}'] >= 20 + total  # the reading client
    assert m['healthmed_ws_frames_total{path="queued"}'] > 0  # the backed-up one
    assert m["healthmed_ws_dropped_slow_total"] == 1

    received, end = await asyncio.to_thread(drain, slow)
    assert 0 < len(received) < total
    assert received == list(range(len(received)))  # direct, then queued: never reordered
    assert end == 1013


async def test_an_event_on_the_shared_redis_reaches_clients_of_both_replicas(
    start_server: Callable[..., ServerProcess],
    module_redis: RedisServer,
    open_client: Callable[..., Any],
    publisher: redis.Redis,
) -> None:
    """Two replicas on one Redis: one PUBLISH reaches a subscriber on each, exactly once."""
    secrets = {
        "HEALTHMED_JWT_SECRET": "s" * 48,
        "HEALTHMED_MEETING_SECRET": "m" * 48,
        "HEALTHMED_MASTER_KEY": "A" * 43,
    }
    a = start_server(HEALTHMED_REDIS_URL=module_redis.url, HEALTHMED_ENV="test", **secrets)
    b = start_server(HEALTHMED_REDIS_URL=module_redis.url, HEALTHMED_ENV="test", **secrets)
    token = forge(secrets["HEALTHMED_JWT_SECRET"], "P-rep", "patient")
    on_a = await open_client(a, token)
    on_b = await open_client(b, token)
    topic = "doctor.DREP.slots"
    for c in (on_a, on_b):
        assert (await c.subscribe(topic))["type"] == "subscribed"
    frame = envelope(topic, "slot.updated", {"slot_id": "S", "status": "taken"})
    publisher.publish("hm:t:" + topic, frame)
    for c in (on_a, on_b):
        assert await recv_json(c.ws) == json.loads(frame)
    with pytest.raises(TimeoutError):
        await recv_json(on_b.ws, seconds=0.3)


# -- events of docs/API.md's table, produced by the real booking routes ------------------------


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def create_slots(http: httpx.Client, headers: dict[str, str], count: int) -> list[str]:
    """``count`` 50-minute slots two days ahead, one hour apart; their ids."""
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    slots = [
        {
            "start": _iso(base + timedelta(hours=h)),
            "end": _iso(base + timedelta(hours=h, minutes=50)),
        }
        for h in range(count)
    ]
    r = http.post("/v1/me/slots", json={"slots": slots}, headers=headers)
    assert r.status_code == 201, r.text
    return [s["id"] for s in r.json()["items"]]


def book(http: httpx.Client, headers: dict[str, str], slot_id: str) -> str:
    r = http.post("/v1/appointments", json={"slot_id": slot_id}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def act(http: httpx.Client, headers: dict[str, str], path: str, body: Any = None) -> None:
    r = http.post(path, json=body or {}, headers=headers)
    assert r.status_code == 200, r.text


class Recorder:
    """Every event frame one websocket receives, as (topic, event, id, status)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.events: list[tuple[str, str, str, str]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.client.ws:
                frame = json.loads(raw)
                if frame["type"] == "event":
                    data = frame["data"]
                    key = data.get("slot_id") or data["id"]
                    self.events.append((frame["topic"], frame["event"], key, data["status"]))

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def settle(recorders: dict[str, Recorder], expected: int) -> None:
    """Wait until ``expected`` events arrived in all, then a quiet period for strays."""
    async with asyncio.timeout(timeout(10)):
        while sum(len(r.events) for r in recorders.values()) < expected:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    for r in recorders.values():
        await r.stop()


async def test_every_booking_event_reaches_exactly_its_topics(
    rt_server: ServerProcess,
    rt_http: httpx.Client,
    open_client: Callable[..., Any],
    unique: Callable[[], int],
) -> None:
    """slot.updated, requested, confirmed, refused and cancelled reach the topics of docs/API.md's
    table and no other: a patient never sees another patient's appointment events."""
    http = rt_http
    doctor = register_doctor(http, unique())
    other_doctor = register_doctor(http, unique())
    p1, p2, p3 = (register_patient(http, unique()) for _ in range(3))
    d_pair, d2_pair = login_doctor(http, doctor), login_doctor(http, other_doctor)
    p1_pair, p2_pair, p3_pair = (login_patient(http, p) for p in (p1, p2, p3))
    d_h, p1_h, p2_h = (
        {"Authorization": f"Bearer {pair['access_token']}"} for pair in (d_pair, p1_pair, p2_pair)
    )
    slots_topic = f"doctor.{doctor['id']}.slots"
    clients = {
        "doctor": await open_client(rt_server, d_pair["access_token"]),
        "p1": await open_client(rt_server, p1_pair["access_token"]),
        "p2": await open_client(rt_server, p2_pair["access_token"]),
        "p3": await open_client(rt_server, p3_pair["access_token"]),
        "other_doctor": await open_client(rt_server, d2_pair["access_token"]),
    }
    for name in ("doctor", "p1", "p2"):
        assert (await clients[name].subscribe(slots_topic))["type"] == "subscribed"
    other_slots = f"doctor.{other_doctor['id']}.slots"
    assert (await clients["other_doctor"].subscribe(other_slots))["type"] == "subscribed"
    recorders = {name: Recorder(c) for name, c in clients.items()}

    s1, s2, s3, s4 = create_slots(http, d_h, 4)
    a1 = book(http, p1_h, s1)
    act(http, d_h, f"/v1/appointments/{a1}/accept")
    a2 = book(http, p1_h, s2)
    act(http, d_h, f"/v1/appointments/{a2}/refuse", {"reason": "not available"})
    a3 = book(http, p2_h, s3)
    act(http, p2_h, f"/v1/appointments/{a3}/cancel", {"justification": "I cannot make it, sorry"})
    r = http.delete(f"/v1/me/slots/{s4}", headers=d_h)
    assert r.status_code == 204, r.text

    slot_events = [
        (slots_topic, "slot.updated", s, status)
        for s, status in [
            (s1, "open"), (s2, "open"), (s3, "open"), (s4, "open"),
            (s1, "taken"), (s2, "taken"), (s2, "open"), (s3, "taken"), (s3, "open"),
            (s4, "removed"),
        ]
    ]  # fmt: skip
    d_topic = f"doctor.{doctor['id']}.appointments"
    p1_topic, p2_topic = f"patient.{p1['id']}.appointments", f"patient.{p2['id']}.appointments"
    expected = {
        "doctor": [
            *slot_events,
            (d_topic, "appointment.requested", a1, "requested"),
            (d_topic, "appointment.confirmed", a1, "confirmed"),
            (d_topic, "appointment.requested", a2, "requested"),
            (d_topic, "appointment.requested", a3, "requested"),
            (d_topic, "appointment.cancelled", a3, "cancelled"),
        ],
        "p1": [
            *slot_events,
            (p1_topic, "appointment.confirmed", a1, "confirmed"),
            (p1_topic, "appointment.refused", a2, "refused"),
        ],
        "p2": [*slot_events, (p2_topic, "appointment.cancelled", a3, "cancelled")],
        "p3": [],
        "other_doctor": [],
    }
    await settle(recorders, sum(len(v) for v in expected.values()))
    for name, recorder in recorders.items():
        got = sorted(recorder.events)
        assert got == sorted(expected[name]), name
        per_topic_order = [e for e in recorder.events if e[0] == slots_topic]
        assert per_topic_order == [e for e in expected[name] if e[0] == slots_topic], name


async def test_an_undecided_request_expires_to_the_patient_and_the_doctor(
    start_server: Callable[..., ServerProcess], open_client: Callable[..., Any]
) -> None:
    """appointment.expired reaches the patient's and the doctor's topics, and the slot reopens."""
    redis_server = RedisServer.start()
    try:
        server = start_server(
            HEALTHMED_REDIS_URL=redis_server.url, HEALTHMED_REQUEST_TTL_SECONDS="1"
        )
        with httpx.Client(base_url=server.url, timeout=30) as http:
            n = int(uuid.uuid4().int % 10**8)
            doctor, patient = register_doctor(http, n), register_patient(http, n + 1)
            d_pair, p_pair = login_doctor(http, doctor), login_patient(http, patient)
            d = await open_client(server, d_pair["access_token"])
            p = await open_client(server, p_pair["access_token"])
            bystander = await open_client(server, forge(secret_of(server), "P-by", "patient"))
            slots_topic = f"doctor.{doctor['id']}.slots"
            assert (await p.subscribe(slots_topic))["type"] == "subscribed"
            (slot,) = create_slots(http, {"Authorization": f"Bearer {d_pair['access_token']}"}, 1)
            appt = book(http, {"Authorization": f"Bearer {p_pair['access_token']}"}, slot)
            recorders = {"d": Recorder(d), "p": Recorder(p), "by": Recorder(bystander)}
            await settle(recorders, 6)
        d_topic = f"doctor.{doctor['id']}.appointments"
        p_topic = f"patient.{patient['id']}.appointments"
        assert recorders["d"].events == [
            (d_topic, "appointment.requested", appt, "requested"),
            (d_topic, "appointment.expired", appt, "expired"),
        ]
        assert [e for e in recorders["p"].events if e[0] == p_topic] == [
            (p_topic, "appointment.expired", appt, "expired")
        ]
        assert [e for e in recorders["p"].events if e[0] == slots_topic] == [
            (slots_topic, "slot.updated", slot, "open"),
            (slots_topic, "slot.updated", slot, "taken"),
            (slots_topic, "slot.updated", slot, "open"),
        ]
        assert recorders["by"].events == []
    finally:
        redis_server.stop()


async def test_a_booking_through_replica_a_reaches_clients_on_replica_b(
    start_server: Callable[..., ServerProcess], open_client: Callable[..., Any]
) -> None:
    """Two replicas on one Redis: a booking made on A is pushed to the doctor's and the
    watching patient's websockets held by B."""
    redis_server = RedisServer.start()
    try:
        secrets = {
            "HEALTHMED_JWT_SECRET": "s" * 48,
            "HEALTHMED_MEETING_SECRET": "m" * 48,
            "HEALTHMED_MASTER_KEY": "A" * 43,
        }
        a = start_server(HEALTHMED_REDIS_URL=redis_server.url, **secrets)
        b = start_server(HEALTHMED_REDIS_URL=redis_server.url, **secrets)
        with httpx.Client(base_url=a.url, timeout=30) as http:
            n = int(uuid.uuid4().int % 10**8)
            doctor, patient = register_doctor(http, n), register_patient(http, n + 1)
            d_pair, p_pair = login_doctor(http, doctor), login_patient(http, patient)
            (slot,) = create_slots(http, {"Authorization": f"Bearer {d_pair['access_token']}"}, 1)
            d_on_b = await open_client(b, d_pair["access_token"])
            p_on_b = await open_client(b, p_pair["access_token"])
            slots_topic = f"doctor.{doctor['id']}.slots"
            assert (await p_on_b.subscribe(slots_topic))["type"] == "subscribed"
            appt = book(http, {"Authorization": f"Bearer {p_pair['access_token']}"}, slot)
        requested = await recv_json(d_on_b.ws)
        assert (requested["event"], requested["data"]["id"]) == ("appointment.requested", appt)
        taken = await recv_json(p_on_b.ws)
        assert (taken["event"], taken["data"]["slot_id"], taken["data"]["status"]) == (
            "slot.updated",
            slot,
            "taken",
        )
    finally:
        redis_server.stop()
