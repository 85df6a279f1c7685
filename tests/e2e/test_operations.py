"""Operations endpoints of the real server: probes, metrics per route, the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from tests.e2e._accounts import register_patient


def test_live_and_ready(http: httpx.Client) -> None:
    """Both probes answer 200 on a healthy server; ready reports Redis and the store."""
    assert http.get("/health/live").status_code == 200
    ready = http.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["redis"] == "ok"
    assert ready.json()["store"] == "ok"


def test_metrics_count_requests_per_route(http: httpx.Client, unique: Callable[[], int]) -> None:
    """Prometheus text with a request counter and a latency histogram labelled by route."""
    register_patient(http, unique())
    http.get("/v1/specialties")
    http.get("/v1/specialties")
    text = http.get("/metrics").text
    counts = re.findall(r"^healthmed_requests_total\{([^}]*)\} ([0-9.e+]+)$", text, re.M)
    by_path = {}
    for labels, value in counts:
        path = re.search(r'path="([^"]*)"', labels)
        if path:
            by_path[path.group(1)] = by_path.get(path.group(1), 0) + float(value)
    assert by_path.get("/v1/specialties", 0) >= 2
    assert by_path.get("/v1/patients", 0) >= 1
    assert "healthmed_request_duration_seconds_bucket" in text


def test_openapi_lists_every_account_and_directory_route(http: httpx.Client) -> None:
    """The schema documents each route of the contract with its error responses."""
    schema = http.get("/schema/openapi.json").json()
    paths = schema["paths"]
    expected = {
        "/v1/doctors": {"post", "get"},
        "/v1/patients": {"post"},
        "/v1/auth/doctors/login": {"post"},
        "/v1/auth/patients/login": {"post"},
        "/v1/auth/refresh": {"post"},
        "/v1/auth/logout": {"post"},
        "/v1/me": {"get", "patch", "delete"},
        "/v1/me/export": {"get"},
        "/v1/specialties": {"get"},
        "/v1/doctors/{doctor_id}": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    assert "409" in paths["/v1/patients"]["post"]["responses"]
    assert "422" in paths["/v1/doctors"]["get"]["responses"]
    assert "429" in paths["/v1/auth/patients/login"]["post"]["responses"]
    assert http.get("/schema").status_code == 200
