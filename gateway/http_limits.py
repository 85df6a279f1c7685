"""HTTP/1.1 edge limits uvicorn's httptools protocol lacks: header size and header-read time.

uvicorn's ``httptools`` protocol (the fast one) buffers a request head of any size (a 300 MiB
header was accepted and grew the process by 580 MB) and never times out a connection that
sends its head slowly or not at all (idle sockets pile up until the file limit is reached).
h11 has a size limit but no read timeout either, and halves the request rate. So
:class:`BoundedHttpToolsProtocol` keeps httptools and adds both:

* the request line plus headers may hold at most ``max_header_bytes`` (431 and close past it),
  counted as bytes arrive while a head is open (a body after it never counts);
* the head must be complete ``header_timeout`` seconds after the connection opened or, on a
  kept-alive connection, after the next head's first byte (408 and close otherwise; an idle
  kept-alive connection is closed by uvicorn's keep-alive timeout): a silent or trickling
  client holds a socket for that long at most.

Upgrades to websockets pass through unchanged (the head is complete before the upgrade).
``configure`` sets the limits from the settings and returns the class uvicorn is given;
``concurrency_limit`` derives uvicorn's ``limit_concurrency`` from the process's file limit.
"""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    import asyncio

    from engine.config import Settings

FD_RESERVE = 64
"""Descriptors kept free of client connections: Redis pool, store, blobs, logs, listeners."""


def _reply(status: bytes, message: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: "
        + str(len(message)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + message
    )


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with a cap on the request head's size and on the time to read it."""

    max_header_bytes = 32 * 1024
    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_open = True
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    # --- the head timer -------------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refused = True
            self.transport.write(_reply(b"408 Request Timeout", b"request head too slow"))
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # --- the head size --------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        """Count what arrives while a head is open. httptools keeps a header's bytes in its own
        buffer until the header ends, so the parser callbacks come too late to bound them;
        checked after feeding, so a head that ends inside this chunk (with a body after it) is
        never refused for the body's bytes. A kept-alive connection's next head is counted
        from the chunk after its first one. Memory stays under the limit plus two reads."""
        if self._refused:
            return
        if self._head_open:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._head_open and self._head_bytes > self.max_header_bytes:
            self._refuse_large()

    def _refuse_large(self) -> None:
        self._refused = True
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(
                _reply(b"431 Request Header Fields Too Large", b"request head too large")
            )
            self.transport.close()

    def on_message_begin(self) -> None:
        # A kept-alive connection's next head: timed from its first byte (an idle one is
        # closed by uvicorn's keep-alive timeout). Not re-armed when the previous response
        # completes: the app's last send can return after the client has already sent its
        # next request, whose head (and then body) must not be timed or counted as a head.
        self._head_open = True
        if self._head_timer is None:
            self._arm()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._head_bytes = 0
        self._disarm()
        super().on_headers_complete()


def configure(settings: Settings) -> type[BoundedHttpToolsProtocol]:
    """Set the limits from ``settings`` and return the class to give uvicorn. Class-level, as
    uvicorn takes a class and pickles it by name for its worker processes (each worker calls
    this again when it builds its app: ``gateway.app.app_from_env``)."""
    BoundedHttpToolsProtocol.max_header_bytes = settings.max_header_bytes
    BoundedHttpToolsProtocol.header_timeout = float(settings.header_timeout_seconds)
    return BoundedHttpToolsProtocol


def concurrency_limit() -> int:
    """uvicorn's ``limit_concurrency`` from the file limit, raised to its hard maximum first:
    past it uvicorn answers 503 at once instead of the process failing on ``EMFILE``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(16, soft - FD_RESERVE)
