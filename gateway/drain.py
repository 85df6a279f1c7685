"""Graceful drain on SIGTERM (docs/API.md "Operations"), for one ``healthmed serve`` process.

Kubernetes (or any orchestrator) sends SIGTERM, keeps routing to the pod until its endpoints
update, and kills it after ``terminationGracePeriodSeconds``. So on the first SIGTERM:

1. ``/health/ready`` answers 503 at once (:class:`Drain` is read by the readiness route), so
   the load balancer takes this replica out;
2. it keeps serving everything, new connections included, for ``HEALTHMED_DRAIN_SECONDS``
   (default 5);
3. then uvicorn's own shutdown runs: it stops accepting, asks every connection to
   ``shutdown()`` (a websocket closes with 1001, going away, so its client reconnects to
   another replica; a keep-alive HTTP connection closes after its in-flight response), waits
   up to ``GRACEFUL_SECONDS`` for in-flight requests, then runs the app's lifespan shutdown;
4. the process exits 0.

The whole sequence takes at most ``drain_seconds + GRACEFUL_SECONDS`` plus the lifespan
shutdown (about a second): ``terminationGracePeriodSeconds`` must be above that. A second
SIGTERM while draining changes nothing; SIGINT (Ctrl-C) still stops at once as uvicorn does.

uvicorn re-raises the signals it captured once it has shut down (so a default-handled SIGTERM
ends the process with 143); the drained SIGTERM is not captured, so the exit status is 0.
With ``--workers > 1`` uvicorn's process supervisor owns the signals and there is no drain:
production runs one process per pod.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from types import FrameType

log = logging.getLogger("healthmed.gateway")

GRACEFUL_SECONDS = 5.0
"""How long uvicorn's shutdown waits for in-flight requests and closing websockets."""


class Drain:
    """Whether this process is draining: set by SIGTERM, read by ``/health/ready``."""

    __slots__ = ("draining",)

    def __init__(self) -> None:
        self.draining = False


class DrainingServer(uvicorn.Server):
    """uvicorn's server with the drain above in front of its shutdown."""

    def __init__(self, config: uvicorn.Config, drain: Drain, seconds: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._seconds = seconds
        self._deadline: float | None = None
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        if self._deadline is None:  # a signal handler: set flags only, log in on_tick
            self._drain.draining = True
            self._deadline = time.monotonic() + self._seconds

    async def on_tick(self, counter: int) -> bool:
        if self._deadline is not None and not self.should_exit:
            if not self._announced:
                self._announced = True
                log.info("SIGTERM: not ready, draining for %.1fs", self._seconds)
            if time.monotonic() >= self._deadline:
                log.info("drain over: closing connections")
                self.should_exit = True
        return await super().on_tick(counter)


__all__ = ["GRACEFUL_SECONDS", "Drain", "DrainingServer"]
