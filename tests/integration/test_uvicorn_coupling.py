"""The realtime gateway's direct writes depend on uvicorn internals: these tests pin them.

``gateway/routes/realtime.py`` writes event frames straight through uvicorn's
websockets-sansio protocol object (see its module docstring). If a uvicorn (or websockets)
upgrade renames or changes what is used, these tests fail in CI instead of the fast path
silently turning off or, worse, misbehaving in production.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
import tomllib
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from litestar import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.protocol import State
from websockets.server import ServerProtocol

with warnings.catch_warnings():
    # gateway/routes/booking.py uses Parameter(query=...), deprecated in Litestar 2.25; the
    # pytest config turns warnings into errors, and the server itself runs without that.
    warnings.simplefilter("ignore", DeprecationWarning)
    from gateway.routes import realtime

ROOT = Path(__file__).resolve().parents[2]


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_installed_uvicorn_is_inside_the_pinned_range() -> None:
    """pyproject pins uvicorn to the minor version the direct-write path was checked against."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("uvicorn"))
    low = re.search(r">=([\d.]+)", spec)
    high = re.search(r"<([\d.]+)", spec)
    assert low is not None, f"uvicorn must be pinned to a range: {spec}"
    assert high is not None, f"uvicorn must be pinned to a range: {spec}"
    installed = _version_tuple(version("uvicorn"))
    assert _version_tuple(low[1]) <= installed < _version_tuple(high[1]), (spec, installed)


def test_uvicorn_send_still_writes_text_frames_the_way_the_fast_path_does() -> None:
    """The fast path mirrors uvicorn's own send() for websocket.send; check that it still is."""
    send = inspect.getsource(WebSocketsSansIOProtocol.send)
    assert "await self.writable.wait()" in send
    assert "self.conn.send_text(text_data.encode())" in send
    assert 'self.transport.write(b"".join(output))' in send
    assert "self.writable.clear()" in inspect.getsource(WebSocketsSansIOProtocol.pause_writing)
    assert "self.writable.set()" in inspect.getsource(WebSocketsSansIOProtocol.resume_writing)
    # The handshake's request/response are released after accept (memory): uvicorn must read
    # them only while handshaking.
    for name, member in inspect.getmembers(WebSocketsSansIOProtocol, inspect.isfunction):
        source = inspect.getsource(member)
        if name not in ("handle_connect", "send"):
            assert not re.search(r"self\.(request|response)\b", source), name
    accept_branch = inspect.getsource(WebSocketsSansIOProtocol.send).split(
        "elif not self.close_sent", 1
    )[1]
    assert not re.search(r"self\.(request|response)\b", accept_branch)
    for method in ("send_text", "data_to_send"):
        assert callable(getattr(ServerProtocol, method))


class FakeTransport:
    """Enough of an asyncio transport for the protocol; records what is written."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _text_frames(data: bytes) -> list[bytes]:
    """Payloads of the unmasked server text frames in ``data`` (after the 101 response)."""
    _, _, rest = bytes(data).partition(b"\r\n\r\n")
    out = []
    while rest:
        assert rest[0] == 0x81, rest[:2]  # FIN + text
        size, head = rest[1] & 0x7F, 2
        if size == 126:
            size, head = int.from_bytes(rest[2:4], "big"), 4
        out.append(rest[head : head + size])
        rest = rest[head + size :]
    return out


_HANDSHAKE = (
    b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def test_the_fast_path_finds_uvicorns_protocol_and_writes_valid_text_frames() -> None:
    """Through Litestar's send wrappers to the real protocol object; writes only when it may."""
    checks: list[Any] = []
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def middleware_send(message: Any) -> None:  # a closure, like Litestar's
            await send(message)

        socket: WebSocket[Any, Any, Any] = WebSocket(scope, receive, middleware_send)
        await socket.accept()  # reads websocket.connect, sends websocket.accept
        proto = realtime._sansio_protocol(socket.send)
        checks.append(proto)
        assert proto is not None
        transport = proto.transport
        checks.append(realtime._write_now(proto, '{"n":1,"é":"ü"}'.encode()))
        proto.pause_writing()  # the transport's buffer is above its high-water mark
        checks.append(realtime._write_now(proto, b'{"n":2}'))
        proto.resume_writing()
        transport.buffered = 10 * 1024 * 1024  # a buffer over the limit
        checks.append(realtime._write_now(proto, b'{"n":3}'))
        transport.buffered = 0
        checks.append(realtime._write_now(proto, b'{"n":4}'))
        await socket.close(code=1000)
        checks.append(realtime._write_now(proto, b'{"n":5}'))  # after the close frame
        done.set()

    config = uvicorn.Config(app, ws="websockets-sansio", log_level="warning", lifespan="off")
    config.load()
    proto = WebSocketsSansIOProtocol(config, ServerState(), app_state={})
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.data_received(_HANDSHAKE)
    async with asyncio.timeout(5):
        await done.wait()
    assert checks[0] is proto
    assert realtime._looks_usable(proto)
    assert isinstance(proto.conn, ServerProtocol)
    assert proto.conn.state is not State.OPEN  # closed by the app
    assert checks[1:] == [True, False, False, True, False]
    frames = _text_frames(bytes(transport.written).split(b"\x88", 1)[0])
    assert frames == ['{"n":1,"é":"ü"}'.encode(), b'{"n":4}']
    for frame in frames:
        frame.decode()  # valid UTF-8 text


def test_a_send_that_is_not_uvicorns_has_no_fast_path() -> None:
    """Another ASGI server: no protocol object found, every frame goes through ASGI send."""

    async def other_server_send(message: Any) -> None:
        pass

    class Lookalike:
        """Has the attribute names but is not uvicorn's class: not trusted."""

        def __init__(self) -> None:
            self.conn = self.transport = self.writable = self.close_sent = None

        async def send(self, message: Any) -> None:
            pass

    assert realtime._sansio_protocol(other_server_send) is None
    assert realtime._sansio_protocol(Lookalike().send) is None


@pytest.mark.parametrize("attribute", ["conn", "transport", "writable", "close_sent"])
async def test_a_protocol_missing_an_attribute_is_not_used(attribute: str) -> None:
    """If uvicorn drops or retypes an attribute, the fast path is off, not broken."""
    config = uvicorn.Config(lambda *a: None, ws="websockets-sansio", lifespan="off")
    config.load()
    proto = WebSocketsSansIOProtocol(config, ServerState(), app_state={})
    proto.connection_made(FakeTransport())  # type: ignore[arg-type]
    assert realtime._looks_usable(proto)
    setattr(proto, attribute, object())
    assert not realtime._looks_usable(proto)
    assert realtime._sansio_protocol(proto.send) is None


# The app's route declarations raise Litestar 2.25 deprecation warnings (not this module's).
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_under_another_asgi_server_every_frame_takes_the_asgi_send_path(
    tmp_path: Path,
) -> None:
    """The real app under Litestar's test client (not uvicorn): no fast path, still delivered."""
    import jwt
    from litestar.testing import TestClient

    from engine.config import load_settings
    from gateway.app import create_app

    settings = load_settings({"HEALTHMED_ENV": "test", "HEALTHMED_DATA_DIR": str(tmp_path)})
    app = create_app(settings)
    now = int(time.time())
    claims = {"iss": "healthmed", "aud": "healthmed-api", "sub": "P-asgi", "role": "patient",
              "iat": now, "exp": now + 600, "jti": "j-asgi"}  # fmt: skip
    token = jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
    topic = "doctor.DASGI.slots"
    before = realtime._stats.without_direct
    with TestClient(app) as client, client.websocket_connect("/v1/ws") as ws:
        engine = app.state.engine
        ws.send_json({"type": "auth", "token": token})
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "subscribe", "topic": topic})
        assert ws.receive_json() == {"type": "subscribed", "topic": topic}
        for n in range(3):
            frame = f'{{"type":"event","topic":"{topic}","n":{n},"é":"ü"}}'.encode()
            client.blocking_portal.call(engine.redis.publish, "hm:t:" + topic, frame)
        assert [ws.receive_json()["n"] for _ in range(3)] == [0, 1, 2]
        assert realtime._stats.without_direct == before + 1
        assert engine.hub.delivered_direct == 0
        assert engine.hub.delivered_queued == 3
