"""The client address behind trusted proxies: every X-Forwarded-For line counts, in order."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Request

from gateway.deps import client_address

PROXIES = frozenset({"10.0.0.0/8"})


def _request(peer: str, *lines: str) -> Request[Any, Any, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"x-forwarded-for", line.encode()) for line in lines],
        "client": (peer, 40000),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "root_path": "",
        "state": {},
    }
    return Request(scope)  # type: ignore[arg-type]


def test_a_line_prepended_by_the_client_does_not_win() -> None:
    """The client sends its own X-Forwarded-For line; the proxy appends another with the
    real address: the real one is used, not the forged first line."""
    request = _request("10.0.0.2", "198.51.100.66", "203.0.113.5")
    assert client_address(request, PROXIES) == "203.0.113.5"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param(("1.1.1.1, 203.0.113.5",), "203.0.113.5", id="one-line"),
        pytest.param(("1.1.1.1", "203.0.113.5, 10.0.0.7"), "203.0.113.5", id="two-proxies"),
        pytest.param(("203.0.113.5", "10.0.0.7", "10.0.0.9"), "203.0.113.5", id="lines-of-proxies"),
        pytest.param((), "10.0.0.2", id="no-header"),
        pytest.param(("not-an-ip",), "10.0.0.2", id="garbage"),
    ],
)
def test_the_address_the_trusted_proxy_saw(lines: tuple[str, ...], expected: str) -> None:
    """Hops are read right to left across all lines, skipping trusted proxies."""
    assert client_address(_request("10.0.0.2", *lines), PROXIES) == expected


def test_an_untrusted_peer_is_its_own_address() -> None:
    """From a peer that is not a trusted proxy the header is ignored entirely."""
    assert client_address(_request("198.51.100.1", "203.0.113.5"), PROXIES) == "198.51.100.1"
