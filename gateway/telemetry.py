"""The figures an operator pages on, in ``/metrics``, and the business-event log lines.

Series (Prometheus names as exposed; README "Operations: alerts" says what to alert on):

- ``healthmed_bookings_total{outcome}``: ``POST /v1/appointments`` by outcome: ``requested``
  (201), or the problem code (``slot_unavailable``, ``patient_overlap``, ``redis_unavailable``,
  ``store_unavailable``...).
- ``healthmed_decision_seconds{decision}``: latency of accept and refuse calls.
- ``healthmed_redis_errors_total``, ``healthmed_store_errors_total``: requests that failed
  (503) because Redis or the durable store did not answer.
- ``healthmed_outbox_depth``: messages due in the notification outbox and not yet sent, as
  :func:`follow_outbox_depth` last read it (every ``OUTBOX_DEPTH_SECONDS``; at most 10,000).
- ``healthmed_ws_connections`` and the other ``healthmed_ws_*`` series come from
  ``gateway/realtime/_metrics.py``;
- request rate and latency per route from :func:`http_metrics_middleware`
  (``healthmed_requests_total``, ``healthmed_request_duration_seconds``,
  ``healthmed_requests_in_progress``, ``healthmed_requests_error_total``), labelled ``method``,
  ``path`` (the route template, never raw ids), ``status_code`` and ``app_name``: the series
  Litestar's Prometheus middleware exposed, at a fraction of its cost per request.

Business events go to the ``healthmed.events`` logger: the event name and ids (appointment,
slot, record, share, doctor), never a name, e-mail, CPF, token or record content. Each line
also carries the request id and user id (gateway/logs.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from litestar.types import ASGIApp, Message, Receive, Scope, Send
    from prometheus_client.metrics_core import Metric

events = logging.getLogger("healthmed.events")

BOOKINGS = Counter(
    "healthmed_bookings", "Appointment requests (POST /v1/appointments) by outcome", ["outcome"]
)
DECISIONS = Histogram(
    "healthmed_decision_seconds",
    "Latency of a doctor's accept or refuse call",
    ["decision"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REDIS_ERRORS = Counter(
    "healthmed_redis_errors", "Requests that failed because Redis did not answer (503)"
)
STORE_ERRORS = Counter(
    "healthmed_store_errors", "Requests that failed because the durable store did not answer (503)"
)


APP_NAME = "healthmed"
_HTTP_LABELS = ["method", "path", "status_code", "app_name"]
HTTP_REQUESTS = Counter("healthmed_requests", "Total requests", _HTTP_LABELS)
HTTP_ERRORS = Counter("healthmed_requests_error", "Total errors in requests", _HTTP_LABELS)
HTTP_DURATION = Histogram(
    "healthmed_request_duration_seconds",
    "Request duration, in seconds",
    _HTTP_LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HTTP_IN_PROGRESS = Gauge(
    "healthmed_requests_in_progress",
    "Total requests currently in progress",
    _HTTP_LABELS,
    multiprocess_mode="livesum",
)
_UNMEASURED = frozenset({"/metrics"})


class _RouteSeries:
    """The labelled children of one route's series, looked up once (``labels()`` takes a
    lock and builds a key on every call)."""

    __slots__ = ("by_status", "in_progress", "method", "path")

    def __init__(self, method: str, path: str) -> None:
        self.method = method
        self.path = path
        self.in_progress = HTTP_IN_PROGRESS.labels(method, path, 200, APP_NAME)
        self.by_status: dict[int, tuple[Counter, Histogram]] = {}

    def done(self, status: int, seconds: float) -> None:
        children = self.by_status.get(status)
        if children is None:
            labels = (self.method, self.path, status, APP_NAME)
            children = (HTTP_REQUESTS.labels(*labels), HTTP_DURATION.labels(*labels))
            self.by_status[status] = children
        if status >= 500:
            HTTP_ERRORS.labels(self.method, self.path, status, APP_NAME).inc()
        children[0].inc()
        children[1].observe(seconds)


_routes: dict[tuple[str, str], _RouteSeries] = {}


def http_metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Route middleware (after routing: the scope carries ``path_template``) counting each
    HTTP request by route and status, timing it to its last body chunk, and holding it in
    ``healthmed_requests_in_progress`` meanwhile. ``/metrics`` itself is not measured."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path_template"] in _UNMEASURED:
            await app(scope, receive, send)
            return
        method, path = scope["method"], scope["path_template"]
        series = _routes.get((method, path))
        if series is None:
            series = _routes.setdefault((method, path), _RouteSeries(method, path))
        started = time.perf_counter()
        status = 200
        seconds = 0.0

        async def measured_send(message: Message) -> None:
            nonlocal status, seconds
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                seconds = time.perf_counter() - started
            await send(message)

        series.in_progress.inc()
        try:
            await app(scope, receive, measured_send)
        finally:
            series.in_progress.dec()
            series.done(status, seconds)

    return middleware


class _OutboxCollector:
    """``healthmed_outbox_depth``, read at scrape time from the registered source."""

    def __init__(self) -> None:
        self.source: Callable[[], int | None] | None = None

    def collect(self) -> Iterator[Metric]:
        source = self.source
        depth = source() if source is not None else None
        if depth is None:
            return
        gauge = GaugeMetricFamily(
            "healthmed_outbox_depth", "Notification messages waiting in the outbox"
        )
        gauge.add_metric([], depth)
        yield gauge


_outbox = _OutboxCollector()
REGISTRY.register(_outbox)


def watch_outbox(source: Callable[[], int | None] | None) -> None:
    """Expose ``source()`` (a cheap, synchronous read of the outbox depth, None when unknown)
    as ``healthmed_outbox_depth``; ``None`` removes it."""
    _outbox.source = source


OUTBOX_DEPTH_SECONDS = 5.0
"""How often each replica re-reads the outbox depth for ``healthmed_outbox_depth``: one index
read of the due messages, so a scrape never waits on the store."""


async def follow_outbox_depth(read: Callable[[], Awaitable[int]]) -> None:
    """Keep ``healthmed_outbox_depth`` at ``await read()``, re-read every
    ``OUTBOX_DEPTH_SECONDS``, until cancelled. A failed read leaves the series out (unknown is
    not zero) until a read succeeds again."""
    last: list[int | None] = [None]
    watch_outbox(lambda: last[0])
    try:
        while True:
            try:
                last[0] = await read()
            except Exception:
                last[0] = None
            await asyncio.sleep(OUTBOX_DEPTH_SECONDS)
    finally:
        watch_outbox(None)


def event(name: str, **ids: Any) -> None:
    """Log business event ``name`` with ids only (no personal data)."""
    events.info("%s", name, extra={"event": name, **ids})


def count_unavailable(exc: BaseException) -> None:
    """Count a 503 against Redis or the store, by the problem code it became."""
    code = error_code(exc)
    if code == "redis_unavailable":
        REDIS_ERRORS.inc()
    elif code == "store_unavailable":
        STORE_ERRORS.inc()


def error_code(exc: BaseException) -> str:
    """The problem code a failure becomes (``redis_unavailable`` for Redis errors)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    from redis.exceptions import RedisError

    return "redis_unavailable" if isinstance(exc, RedisError) else "error"


__all__ = [
    "BOOKINGS",
    "DECISIONS",
    "HTTP_DURATION",
    "HTTP_ERRORS",
    "HTTP_IN_PROGRESS",
    "HTTP_REQUESTS",
    "REDIS_ERRORS",
    "STORE_ERRORS",
    "count_unavailable",
    "error_code",
    "event",
    "follow_outbox_depth",
    "http_metrics_middleware",
    "watch_outbox",
]
