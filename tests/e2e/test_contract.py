"""The HTTP contract around the routes: 405 with ``Allow``, every invalid field reported."""

from __future__ import annotations

import re

import httpx

_METHODS = ("get", "put", "post", "delete", "patch")


def _concrete(path: str) -> str:
    """A request path for an OpenAPI path template (each parameter replaced by a value)."""
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_every_route_answers_405_with_allow(http: httpx.Client) -> None:
    """A method a path does not serve is 405 with an ``Allow`` header listing exactly the
    methods it does serve (RFC 9110), for every path of the OpenAPI document."""
    paths = http.get("/schema/openapi.json").json()["paths"]
    assert len(paths) > 20
    for path, item in paths.items():
        served = {m for m in _METHODS if m in item}
        missing = [m for m in _METHODS if m not in served]
        if not missing:
            continue
        r = http.request(missing[0].upper(), _concrete(path))
        assert r.status_code == 405, (path, missing[0], r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "method_not_allowed"
        allowed = {m.strip().lower() for m in r.headers["allow"].split(",")}
        assert served <= allowed, (path, allowed)
        assert not (set(missing) & allowed), (path, allowed)
