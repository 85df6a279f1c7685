"""Every route of the gateway, collected from one module per concern."""

from __future__ import annotations

from gateway.routes import (
    accounts,
    booking,
    directory,
    health,
    notifications,
    realtime,
    records,
    rescheduling,
    waitlist,
)

ROUTE_HANDLERS = [
    *health.route_handlers,
    *accounts.route_handlers,
    *directory.route_handlers,
    *realtime.route_handlers,
    *records.route_handlers,
    *booking.route_handlers,
    *rescheduling.route_handlers,
    *notifications.route_handlers,
    *waitlist.route_handlers,
]


__all__ = ["ROUTE_HANDLERS"]
