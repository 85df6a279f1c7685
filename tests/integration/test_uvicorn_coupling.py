"""The websocket edge depends on how uvicorn hands over an upgraded connection: pinned here.

``healthmed serve`` gives uvicorn :class:`gateway.realtime.RealtimeProtocol` as its ``ws``
protocol class (gateway/realtime/edge.py). These tests fail in CI if a uvicorn upgrade changes
what that relies on: how the HTTP protocol builds the class and passes it the socket and the
request, and that shutdown asks every member of ``server_state.connections`` to ``shutdown()``.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server, ServerState

from gateway.realtime import RealtimeProtocol

ROOT = Path(__file__).resolve().parents[2]


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_installed_uvicorn_is_inside_the_pinned_range() -> None:
    """pyproject pins uvicorn to the minor version the edge was checked against."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("uvicorn"))
    low = re.search(r">=([\d.]+)", spec)
    high = re.search(r"<([\d.]+)", spec)
    assert low is not None, f"uvicorn must be pinned to a range: {spec}"
    assert high is not None, f"uvicorn must be pinned to a range: {spec}"
    installed = _version_tuple(version("uvicorn"))
    assert _version_tuple(low[1]) <= installed < _version_tuple(high[1]), (spec, installed)


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.protocol: Any = None
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_uvicorns_http_protocol_hands_an_upgrade_to_the_edge() -> None:
    """The real HTTP protocol (httptools, what the CLI runs) builds the edge with the
    keyword arguments it takes, registers it as a connection and gives it the request."""
    config = uvicorn.Config(lambda *a: None, ws=RealtimeProtocol, http="httptools")
    config.load()
    assert config.ws_protocol_class is RealtimeProtocol
    state = ServerState()
    http = HttpToolsProtocol(config=config, server_state=state, app_state={})
    transport = FakeTransport()
    http.connection_made(transport)  # type: ignore[arg-type]
    http.data_received(
        b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    proto = transport.protocol
    assert isinstance(proto, RealtimeProtocol)
    assert state.connections == {proto}  # the HTTP protocol left, the edge joined
    # No app is bound in this test, so the edge answers 503; the point is that it answered.
    assert bytes(transport.written).startswith(b"HTTP/1.1 503")
    await asyncio.sleep(0)


def test_uvicorn_shutdown_asks_every_connection_to_shut_down_and_waits_for_them() -> None:
    source = inspect.getsource(Server.shutdown) + inspect.getsource(Server._wait_tasks_to_complete)
    assert "for connection in list(self.server_state.connections):" in source
    assert "connection.shutdown()" in source
    assert "while self.server_state.connections" in source
