"""``/metrics`` series of the websocket edge, read from the hubs' counters at scrape time."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from engine.realtime import Hub


class _RealtimeCollector:
    """Prometheus collector reading the hubs' counters at scrape time (no per-frame cost)."""

    def __init__(self) -> None:
        self.hubs: weakref.WeakSet[Hub] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        hubs = list(self.hubs)
        connections = GaugeMetricFamily(
            "healthmed_ws_connections", "Authenticated websocket connections in this process"
        )
        connections.add_metric([], sum(h.subscriber_count for h in hubs))
        yield connections
        events = CounterMetricFamily(
            "healthmed_ws_events", "Event frames received from Redis pub/sub"
        )
        events.add_metric([], sum(h.frames_in for h in hubs))
        yield events
        frames = CounterMetricFamily(
            "healthmed_ws_frames",
            "Event frames handed to websocket clients: written during the fan-out, or queued "
            "behind a backed-up socket",
            labels=["path"],
        )
        frames.add_metric(["direct"], sum(h.delivered_direct for h in hubs))
        frames.add_metric(["queued"], sum(h.delivered_queued for h in hubs))
        yield frames
        slow = CounterMetricFamily(
            "healthmed_ws_dropped_slow", "Connections closed because their send queue was full"
        )
        slow.add_metric([], sum(h.dropped_slow for h in hubs))
        yield slow


_collector = _RealtimeCollector()
REGISTRY.register(_collector)


def track(hub: Hub) -> None:
    """Include ``hub``'s counters in ``/metrics`` (for as long as it lives)."""
    _collector.hubs.add(hub)


__all__ = ["track"]
