"""Every route of the gateway, collected from one module per concern."""

from __future__ import annotations

from gateway.routes import health

ROUTE_HANDLERS = [*health.route_handlers]

__all__ = ["ROUTE_HANDLERS"]
