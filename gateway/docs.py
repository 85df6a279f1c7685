"""``/schema``: the API reference served offline, from files inside installed packages.

The viewer is Swagger UI, the pinned build that ``swagger-ui-py`` ships (its ``static/``
folder, Apache-2.0, licence file beside the assets), served at ``/schema/assets/``; the page's
own start-up script is ``gateway/docs_assets/swagger-init.js``. Nothing is fetched from
another origin (no CDN, no validator badge, no remote favicon), and the pages carry a
Content-Security-Policy that allows only this server, so the reference works on a machine
with no internet and cannot be made to load third-party code.
"""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import swagger_ui
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.static_files import create_static_files_router

if TYPE_CHECKING:
    from litestar import Request, Router
    from litestar.response import Response

SWAGGER_UI_ASSETS = Path(swagger_ui.__file__).parent / "static"
"""Swagger UI's distribution files as shipped by the ``swagger-ui-py`` wheel."""
OWN_ASSETS = Path(str(resources.files("gateway") / "docs_assets"))

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Scripts, styles, images and API calls from this server only (Swagger UI sets inline style
attributes, hence ``'unsafe-inline'`` for styles; never for scripts)."""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-ui-standalone-preset.js"></script>
<script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""


async def _with_csp(response: Response[Any]) -> Response[Any]:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


class OfflineSwaggerPlugin(OpenAPIRenderPlugin):
    """Swagger UI at ``/schema`` (and ``/schema/swagger``) from packaged files only."""

    def __init__(self) -> None:
        super().__init__(path=["/", "/swagger"], favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        openapi = self.get_openapi_json_route(request)
        page = _PAGE.format(
            title=html.escape(str(openapi_schema.get("info", {}).get("title", "API"))),
            assets=html.escape(openapi.rsplit("/", 1)[0] + "/assets"),
            openapi=html.escape(openapi),
        )
        return page.encode()

    def receive_router(self, router: Router) -> None:
        router.after_request = _with_csp
        router.register(
            create_static_files_router(
                path="/assets",
                directories=[OWN_ASSETS, SWAGGER_UI_ASSETS],
                include_in_schema=False,
            )
        )
