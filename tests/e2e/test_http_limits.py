"""The real server bounds a request head's size and the time to send it (raw sockets), and
sends the security headers on every response."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable

import httpx

from tests.support import ServerProcess, timeout


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout(10))
    sock.settimeout(timeout(10))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def test_an_oversized_head_is_refused_with_431(server: ServerProcess) -> None:
    """A 1 MiB header gets 431 and a closed connection; the server serves the next client,
    and a head under the limit (24 KiB of headers) is served."""
    with _connect(server) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(16):
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    headers = {f"x-h{i}": "v" * 1000 for i in range(24)}
    r = httpx.get(server.url + "/health/live", headers=headers, timeout=timeout(10))
    assert r.status_code == 200


def test_a_silent_or_trickling_client_is_cut_off(
    start_server: Callable[..., ServerProcess],
) -> None:
    """With a 1 s head timeout: a socket that sends nothing, and one that sends its head a
    byte every 0.2 s, are both closed within a few seconds; a normal request still works."""
    server = start_server(HEALTHMED_HEADER_TIMEOUT_SECONDS="1", HEALTHMED_ENV="test")
    silent = _connect(server)
    trickle = _connect(server)
    began = time.monotonic()
    head = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    closed_at = None
    for byte in head:
        try:
            trickle.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed_at = time.monotonic() - began
            break
        time.sleep(0.2)
        if time.monotonic() - began > timeout(8):
            break
    answer = _read_all(trickle)
    trickle.close()
    assert closed_at is not None or answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert time.monotonic() - began < timeout(8)
    assert _read_all(silent).startswith(b"HTTP/1.1 408")
    silent.close()
    assert httpx.get(server.url + "/health/live", timeout=timeout(10)).status_code == 200


def test_every_response_carries_the_security_headers(server: ServerProcess) -> None:
    """HSTS, nosniff and frame-ancestors on an API answer, an error and the API viewer (whose
    own CSP keeps its directives and gains frame-ancestors)."""
    for path in ("/health/live", "/v1/me", "/schema"):
        r = httpx.get(server.url + path, timeout=timeout(10))
        assert r.headers["strict-transport-security"].startswith("max-age="), path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
    schema = httpx.get(server.url + "/schema", timeout=timeout(10))
    assert "default-src" in schema.headers["content-security-policy"]


def test_an_idle_kept_alive_connection_outlives_uvicorns_default_five_seconds(
    server: ServerProcess,
) -> None:
    """A client that pauses 6 s between two requests on one connection (a patient reading
    before cancelling) gets both answers on it: the server's keep-alive is longer than a load
    balancer's idle timeout, not uvicorn's 5 s, after which a POST sent as the server closes
    the connection was lost."""
    with _connect(server) as sock:
        first = _get_live(sock)
        time.sleep(6)
        second = _get_live(sock)
    assert first.startswith(b"HTTP/1.1 200"), first[:100]
    assert second.startswith(b"HTTP/1.1 200"), second[:100]


def _get_live(sock: socket.socket) -> bytes:
    """``GET /health/live`` on an open connection; the response head once its whole body is
    read (head and body may arrive in separate segments), b"" if the server closed."""
    sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
    length = int(found.group(1)) if found else 0
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head
