"""Operations endpoints of the real server: probes, metrics per route, the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from tests.e2e._accounts import (
    bearer,
    login_doctor,
    patient_session,
    register_doctor,
    register_patient,
)
from tests.support import ServerProcess, wait_until


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


def _series(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample of ``name`` in Prometheus text, by its label set."""
    out = {}
    for labels, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        out[frozenset(re.findall(r'(\w+)="([^"]*)"', labels))] = float(value)
    return out


def test_metrics_hold_no_request_in_progress_and_leave_metrics_out(http: httpx.Client) -> None:
    """Once answered, a route's in-progress gauge is back to 0; scrapes are not counted; each
    request's duration lands in its status's histogram (count = requests)."""
    for _ in range(3):
        assert http.get("/health/live").status_code == 200
    http.get("/metrics")
    text = http.get("/metrics").text
    live = frozenset(
        {("method", "GET"), ("path", "/health/live"), ("status_code", "200"),
         ("app_name", "healthmed")}
    )  # fmt: skip
    assert _series(text, "healthmed_requests_in_progress")[live] == 0
    total = _series(text, "healthmed_requests_total")[live]
    assert _series(text, "healthmed_request_duration_seconds_count")[live] == total >= 3
    assert 'path="/metrics"' not in text


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


def test_metrics_have_the_series_an_operator_pages_on(
    server: ServerProcess, http: httpx.Client, unique: Callable[[], int]
) -> None:
    """/metrics counts bookings by outcome and times decisions, and exposes websocket
    connections, Redis and store errors and the outbox depth."""
    doc = bearer(login_doctor(http, register_doctor(http, unique())))
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=3)
    end = start + timedelta(minutes=50)
    created = http.post(
        "/v1/me/slots",
        headers=doc,
        json={
            "slots": [{"start": f"{start:%Y-%m-%dT%H:%M:%SZ}", "end": f"{end:%Y-%m-%dT%H:%M:%SZ}"}]
        },
    )
    slot = created.json()["items"][0]["id"]
    first = patient_session(http, unique())
    won = http.post("/v1/appointments", headers=first, json={"slot_id": slot})
    assert won.status_code == 201, won.text
    lost = http.post(
        "/v1/appointments", headers=patient_session(http, unique()), json={"slot_id": slot}
    )
    assert lost.status_code == 409
    assert http.post(f"/v1/appointments/{won.json()['id']}/accept", headers=doc).status_code == 200
    text = http.get("/metrics").text

    def value(series: str) -> float:
        match = re.search(rf"^{re.escape(series)} ([0-9.e+]+)$", text, re.MULTILINE)
        assert match, f"{series} is not in /metrics"
        return float(match.group(1))

    assert value('healthmed_bookings_total{outcome="requested"}') >= 1
    assert value('healthmed_bookings_total{outcome="slot_unavailable"}') >= 1
    assert value('healthmed_decision_seconds_count{decision="accept"}') >= 1
    for series in ("healthmed_ws_connections", "healthmed_redis_errors_total"):
        value(series)  # present (the module's server is shared: its count is not ours alone)
    value("healthmed_store_errors_total")
    # The booking and the accept queued e-mails; the depth is re-read every few seconds.
    wait_until(lambda: "healthmed_outbox_depth " in http.get("/metrics").text, 10, "depth")
