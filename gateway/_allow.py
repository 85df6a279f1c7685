"""OPTIONS answers ``Allow`` with every method of the path (RFC 9110 section 10.2.1).

Litestar 2 builds one automatic OPTIONS handler per route object, and a path served by
handlers from several modules (``GET`` and ``POST /v1/appointments``) gets several route
objects, so its ``Allow`` listed only some of the methods. This hook rewrites the header
from the app's full route table; 405 answers already list every method (the router's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.routes import HTTPRoute

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import Message, Scope

_tables: dict[int, dict[str, bytes]] = {}


def _table(app: Litestar) -> dict[str, bytes]:
    table = _tables.get(id(app))
    if table is None:
        methods: dict[str, set[str]] = {}
        for route in app.routes:
            if isinstance(route, HTTPRoute):
                methods.setdefault(route.path, set()).update(route.methods)
        table = {path: ", ".join(sorted(m)).encode() for path, m in methods.items()}
        _tables[id(app)] = table
    return table


async def complete_options_allow(message: Message, scope: Scope) -> None:
    """``before_send`` hook: only OPTIONS response starts are touched."""
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    handler: Any = scope.get("route_handler")
    app: Any = scope.get("litestar_app")
    if handler is None or app is None:
        return
    allow = next((_table(app).get(p) for p in handler.paths if p in _table(app)), None)
    if allow is None:
        return
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
    message["headers"] = [*headers, (b"allow", allow)]
