"""The Litestar application factory.

``create_app(settings)`` builds the app; the engine (Redis, store, blob store, background
tasks) opens in the lifespan and reaches handlers through dependency injection.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusController

from engine.principal import Principal
from engine.runtime import Engine
from gateway import realtime, telemetry
from gateway._allow import complete_options_allow
from gateway._contract import tighten
from gateway.deps import DEPENDENCIES
from gateway.docs import OfflineSwaggerPlugin
from gateway.drain import Drain
from gateway.problems import EXCEPTION_HANDLERS
from gateway.routes import ROUTE_HANDLERS
from gateway.routes import realtime as realtime_route
from gateway.security_headers import security_headers_middleware
from gateway.webapp import route_handlers as WEB_APP

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from litestar.types import ASGIApp

    from engine.config import Settings

log = logging.getLogger("healthmed.gateway")


class MetricsController(PrometheusController):
    path = "/metrics"
    openmetrics_format = False
    include_in_schema = False


def _settle_garbage_collector() -> None:
    """Move everything alive after start-up out of the collector's sight, and collect the
    young generation less often.

    The objects built at start (modules, the app, routes, the engine) never die, yet every
    full collection walks them all; requests make short-lived objects by the thousand. In the
    booking benchmark (losing path, 64 connections) this took p99 from 99-167 ms to 43-69 ms
    at the same throughput (loadtest/README.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def create_app(settings: Settings) -> Litestar:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = await Engine.start(settings)
        app.state.engine = engine
        _settle_garbage_collector()
        realtime.bind(engine)  # websockets are served from here on (gateway/realtime/edge.py)
        depth = asyncio.create_task(
            telemetry.follow_outbox_depth(engine.notifications.outbox.depth), name="outbox-depth"
        )
        try:
            yield
        finally:
            depth.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await depth
            realtime.unbind()
            await engine.close()

    openapi = OpenAPIConfig(
        title="Health&Med scheduling engine",
        version="1.0.0",
        path="/schema",
        render_plugins=[OfflineSwaggerPlugin()],  # offline, pinned, with a CSP (gateway/docs.py)
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
            }
        ),
        security=[{"bearer": []}],
        use_handler_docstrings=True,  # every route's docstring is its operation description
    )
    app = Litestar(
        route_handlers=[*ROUTE_HANDLERS, MetricsController, *WEB_APP],
        dependencies=DEPENDENCIES,
        # Handlers and dependencies import these under TYPE_CHECKING; Litestar resolves
        # annotations at registration, so it needs them by name.
        signature_namespace={"Engine": Engine, "Principal": Principal, "State": State},
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"drain": Drain()}),  # gateway/drain.py: SIGTERM makes /health/ready 503
        # HTTP only (gateway/telemetry.py): a websocket is not a request with a duration.
        middleware=[telemetry.http_metrics_middleware, security_headers_middleware],
        openapi_config=openapi,
        request_max_body_size=settings.max_body_bytes,
        before_send=[complete_options_allow],
        debug=False,
        # Logging is configured once for the process (gateway/logs.py); Litestar's default
        # would replace the root handler with its own format.
        logging_config=None,
    )
    tighten(app)  # what the document says beyond Litestar's inference (gateway/_contract.py)
    realtime_route.document(app, settings)  # the websocket's limits as this app applies them
    return app


def app_from_env() -> ASGIApp:
    """The app configured from the environment (the factory each uvicorn worker calls), with
    request ids and the access log (gateway.logs.RequestLog) around it."""
    from engine.config import load_settings
    from gateway.http_limits import configure
    from gateway.logs import RequestLog, configure_logging

    settings = load_settings()
    configure(settings)  # this worker's HTTP protocol limits (gateway/http_limits.py)
    configure_logging(settings)
    return RequestLog(create_app(settings))
