"""Logging: one configuration for the process, request ids, the access log.

``configure_logging(settings)`` installs one handler on the root logger: plain text lines, or
with ``HEALTHMED_LOG_FORMAT=json`` (the default in production) one JSON object a line, written
by python-json-logger's formatter over the standard library's ``logging``. That library and not
structlog: every module of the engine, uvicorn and the libraries already log through
``logging``, and a formatter changes the output of all of them at once without touching one
call site.

Request context: :class:`RequestLog` (an ASGI wrapper around the whole app, so 404s and errors
raised before routing are covered too) gives each HTTP request a :class:`RequestContext` in a
context variable: its ``X-Request-ID`` (the client's own when sane, else a new one) and, once
authenticated, the user id. A filter copies both into every log record emitted while the
request runs, whatever the logger, so an engine warning carries the id of the request that
caused it. The context is one mutable object: a dependency resolved in a child task (Litestar
resolves sibling dependencies in a task group) sets ``user_id`` on the same object the wrapper
reads when it writes the access line.

What never goes in a log line: tokens, passwords, CPFs, e-mail addresses, record contents.
Call sites log ids and codes only; ``tests/e2e/test_logs.py`` reads a real server's log to
prove it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType
from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from engine.config import Settings

access_log = logging.getLogger("healthmed.access")
event_log = logging.getLogger("healthmed.events")
"""Business events (booking, decision, cancellation, upload, share, failed login): ids only."""

REQUEST_ID_HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestContext:
    """What a log line of one request carries. ``user_id`` is set once authenticated."""

    __slots__ = ("request_id", "user_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.user_id: str | None = None


_context: ContextVar[RequestContext | None] = ContextVar("healthmed_request", default=None)


def current_request() -> RequestContext | None:
    """The context of the request being served by this task, if any."""
    return _context.get()


def set_user(user_id: str) -> None:
    """Record the authenticated user of the current request (for its log lines)."""
    ctx = _context.get()
    if ctx is not None:
        ctx.user_id = user_id


def request_id_from(value: bytes | None) -> str:
    """The client's ``X-Request-ID`` when sane (1-64 of letters, digits, ``-_.``), else new."""
    if value is not None and _SANE_ID.fullmatch(value):
        return value.decode("ascii")
    return os.urandom(12).hex()


class _RequestFields(logging.Filter):
    """Copies the current request's id and user into each record (attributes, for formatters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        if ctx is not None:
            if not hasattr(record, "request_id"):
                record.request_id = ctx.request_id
            if ctx.user_id is not None and not hasattr(record, "user_id"):
                record.user_id = ctx.user_id
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object a line: time (RFC 3339, UTC, microseconds), level, logger, message,
    then any extra fields."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def configure_logging(settings: Settings) -> None:
    """Route every logger of the process to one stderr handler in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, defaults={"request_id": "-"}))
    handler.addFilter(_RequestFields())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)


def _route(scope: Any) -> str:
    """The route template Litestar matched (``/v1/appointments/{appointment_id:str}``), so a
    line never carries raw ids from the path; ``unmatched`` for a 404 before routing."""
    template = scope.get("path_template")
    return str(template) if template else "unmatched"


class RequestLog:
    """ASGI wrapper: request id in, ``X-Request-ID`` out, one access line per request.

    Cheap on purpose (the booking benchmark runs through it): a header scan, a context
    variable, a send wrapper that appends one header, and one log record after the response.
    The access line is at INFO on ``healthmed.access``: method, route template, status,
    duration in milliseconds, request id, user id. Lifespan and anything else pass through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                given = value
                break
        ctx = RequestContext(request_id_from(given))
        token = _context.set(ctx)
        header = (REQUEST_ID_HEADER, ctx.request_id.encode("ascii"))
        status = 0
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                _access(scope, status or 500, time.perf_counter() - started, ctx)
            _context.reset(token)


def _access(scope: Any, status: int, seconds: float, ctx: RequestContext) -> None:
    route = _route(scope)
    method = scope["method"]
    duration_ms = round(seconds * 1000, 2)
    fields: dict[str, Any] = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "request_id": ctx.request_id,
        "user_id": ctx.user_id,
    }
    access_log.info("%s %s %d %.1fms", method, route, status, duration_ms, extra=fields)


__all__ = [
    "REQUEST_ID_HEADER",
    "RequestContext",
    "RequestLog",
    "access_log",
    "configure_logging",
    "current_request",
    "event_log",
    "json_formatter",
    "request_id_from",
    "set_user",
]
