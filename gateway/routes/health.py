"""Operations: liveness and readiness probes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import get

from engine.errors import Unavailable
from gateway.problems import problems

if TYPE_CHECKING:
    from litestar.datastructures import State

    from engine.runtime import Engine
    from gateway.drain import Drain


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
async def ready(engine: Engine, state: State) -> dict[str, str]:
    """200 when Redis and the durable store answer, else 503; 503 from the first SIGTERM on
    (the replica is draining, gateway/drain.py)."""
    drain: Drain = state.drain
    if drain.draining:
        raise Unavailable("this replica is shutting down", code="draining")
    return {"status": "ready", **await engine.ready()}


route_handlers = [live, ready]
