"""Security headers on every HTTP response, composed with whatever a route set itself.

* ``Strict-Transport-Security``: browsers reach the API over HTTPS only (the TLS terminator
  in front serves it; a browser ignores the header over plain HTTP, so it is harmless in the
  embedded mode);
* ``X-Content-Type-Options: nosniff``: a response is never run as another type than it says;
* ``frame-ancestors 'none'`` in the ``Content-Security-Policy`` (and ``X-Frame-Options:
  DENY`` for old browsers): no page of ours inside someone else's frame (clickjacking).
  A route with its own policy (the API viewer at ``/schema``, downloads) keeps it, with
  ``frame-ancestors 'none'`` appended when it does not say ``frame-ancestors`` itself;
* ``Referrer-Policy: no-referrer``: a calendar or reset URL never leaks through a referrer.

A header the route already set is left as it is (except the CSP addition above).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.enums import ScopeType

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

HSTS = b"max-age=31536000; includeSubDomains"
_ADDED: tuple[tuple[bytes, bytes], ...] = (
    (b"strict-transport-security", HSTS),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_CSP = b"content-security-policy"
_FRAMES = b"frame-ancestors 'none'"


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` (lower-case names) with the headers above added where missing."""
    names = {name.lower() for name, _ in headers}
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name.lower() == _CSP and b"frame-ancestors" not in value.lower():
            value = value.rstrip().rstrip(b";") + b"; " + _FRAMES
        out.append((name, value))
    out += [(name, value) for name, value in _ADDED if name not in names]
    if _CSP not in names:
        out.append((_CSP, _FRAMES))
    return out


def security_headers_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(list(message.get("headers", [])))
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware
