"""Operations: liveness and readiness probes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import get

from gateway.problems import problems

if TYPE_CHECKING:
    from engine.runtime import Engine


@get("/health/live", tags=["operations"], sync_to_thread=False, summary="Liveness", security=[{}])
def live() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "live"}


@get(
    "/health/ready",
    tags=["operations"],
    summary="Readiness",
    responses=problems(503),
    security=[{}],
)
async def ready(engine: Engine) -> dict[str, str]:
    """200 when Redis and the durable store answer, else 503."""
    return {"status": "ready", **await engine.ready()}


route_handlers = [live, ready]
