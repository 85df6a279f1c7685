"""The web client (docs/API.md "Web client"): ``GET /`` redirects to ``/app/``, where the gateway
serves the static application in ``gateway/static/app`` (plain ES modules, no build step).

The pages carry their own Content-Security-Policy: scripts, styles, images and connections
(the API and its websocket) from this origin only, no inline script or style, no framing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from litestar import get
from litestar.datastructures import CacheControlHeader
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

if TYPE_CHECKING:
    from litestar import Response
    from litestar.types import ControllerRouterHandler

STATIC_DIR = Path(__file__).resolve().parent / "static" / "app"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "geolocation=(self), camera=(), microphone=()",
}


async def _page_headers(response: Response[object]) -> Response[object]:
    for name, value in PAGE_HEADERS.items():
        response.headers[name] = value
    return response


@get("/", include_in_schema=False)
async def root() -> Redirect:
    """The product's front door: the web application."""
    return Redirect(path="/app/")


web_app = create_static_files_router(
    path="/app",
    directories=[STATIC_DIR],
    html_mode=True,
    name="web_app",
    after_request=_page_headers,
    # Revalidate on every load, so a new version of the client is picked up at once.
    cache_control=CacheControlHeader(no_cache=True),
)

route_handlers: list[ControllerRouterHandler] = [root, web_app]

__all__ = ["CONTENT_SECURITY_POLICY", "route_handlers"]
