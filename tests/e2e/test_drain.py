"""SIGTERM drain of the real server (docs/API.md "Operations", gateway/drain.py)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e._accounts import bearer, login_patient, register_patient
from tests.support import RedisServer, ServerProcess, timeout

DRAIN = 2.0
BOUNDARY = "drainboundary"


async def _slow_upload_body(seconds: float) -> AsyncIterator[bytes]:
    """A multipart upload of a text record whose bytes trickle in over ``seconds``."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nexam\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    steps = 20
    for _ in range(steps):
        await asyncio.sleep(seconds / steps)
        yield b"line of an exam result\n"
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def _read_until_closed(ws: ClientConnection) -> None:
    async with asyncio.timeout(timeout(DRAIN + 10)):
        while True:
            await ws.recv()


async def test_sigterm_drains_then_closes_websockets_1001_finishes_requests_and_exits_0(
    module_redis: RedisServer,
    start_server: Callable[..., ServerProcess],
    unique: Callable[[], int],
) -> None:
    """On SIGTERM /health/ready turns 503 at once while the server keeps answering new
    requests for HEALTHMED_DRAIN_SECONDS; then open websockets are closed with 1001, an upload
    still in flight when the drain ends completes with 201, and the process exits 0."""
    server = start_server(
        HEALTHMED_REDIS_URL=module_redis.url,
        HEALTHMED_ENV="test",
        HEALTHMED_DRAIN_SECONDS=str(DRAIN),
    )
    with httpx.Client(base_url=server.url, timeout=30) as http:
        pair = login_patient(http, register_patient(http, unique()))
    auth = bearer(pair)
    sockets = []
    for _ in range(3):
        ws = await connect(server.ws_url)
        await ws.send(json.dumps({"type": "auth", "token": pair["access_token"]}))
        assert json.loads(await ws.recv())["type"] == "ready"
        sockets.append(ws)

    async with httpx.AsyncClient(base_url=server.url, timeout=timeout(30)) as client:
        upload = asyncio.create_task(
            client.post(
                "/v1/me/records",
                headers={**auth, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                content=_slow_upload_body(DRAIN + 1.5),
            )
        )
        await asyncio.sleep(0.3)  # the upload is under way
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as fresh:
            ready = await fresh.get("/health/ready")
            live = await fresh.get("/health/live")
        assert ready.status_code == 503, ready.text
        assert ready.json()["code"] == "draining"
        assert live.status_code == 200  # a new connection is still served while draining
        for ws in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                await _read_until_closed(ws)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
            assert time.monotonic() - signalled >= DRAIN - 0.2, "closed before the drain ended"
        response = await upload
    assert response.status_code == 201, response.text
    assert response.json()["size"] == 20 * len(b"line of an exam result\n")
    code = await asyncio.to_thread(server.proc.wait, timeout(20))
    assert code == 0
    server.proc = None
