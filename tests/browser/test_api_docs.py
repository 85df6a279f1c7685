"""The API reference at /schema works offline: it renders every operation from packaged
files, with every request to another origin blocked."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import ServerProcess, timeout


def test_schema_page_renders_the_operations_offline(page: Any, server: ServerProcess) -> None:
    """Swagger UI draws one block per operation of the OpenAPI document while no request
    leaves for another origin and the CSP reports no violation."""
    violations: list[str] = []
    page.on(
        "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
    )
    paths = httpx.get(server.url + "/schema/openapi.json").json()["paths"]
    operations = sum(
        1 for item in paths.values() for m in item if m in ("get", "post", "put", "patch", "delete")
    )
    page.goto(server.url + "/schema", timeout=timeout(30) * 1000)
    page.wait_for_selector(".opblock", timeout=timeout(30) * 1000)
    assert page.locator(".opblock").count() == operations
    assert page.locator(".opblock-summary-path", has_text="/v1/appointments").count() >= 1
    assert "Health&Med" in page.title()
    assert page.blocked == []
    assert violations == []


def test_schema_page_has_a_strict_csp(server: ServerProcess) -> None:
    """/schema allows scripts, styles and API calls from this server only."""
    r = httpx.get(server.url + "/schema")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert "http" not in csp
    assert "unsafe-eval" not in csp
    assert "cdn" not in r.text
    assert "https://" not in r.text
    asset = httpx.get(server.url + "/schema/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert asset.headers["content-type"].startswith(("text/javascript", "application/javascript"))
