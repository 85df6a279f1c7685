"""Failures of dependencies and malformed input reach clients as clear problems, never a 500."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.e2e._accounts import register_patient
from tests.support import RedisServer, ServerProcess


def test_malformed_json_is_422_not_400(http: httpx.Client) -> None:
    """A body that is not JSON at all is invalid input: 422 with a machine code."""
    r = http.post(
        "/v1/patients", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "malformed_body"


def test_oversized_body_is_413(http: httpx.Client) -> None:
    """Every JSON body has a size limit: 413 with a problem body."""
    r = http.post(
        "/v1/patients", content=b" " * (128 * 1024), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"


def test_redis_down_is_503_and_not_ready(
    start_server: Callable[..., ServerProcess], unique: Callable[[], int]
) -> None:
    """With Redis gone, authenticated routes answer 503 and /health/ready reports it."""
    redis = RedisServer.start()
    try:
        server = start_server(HEALTHMED_REDIS_URL=redis.url, HEALTHMED_ENV="test")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            n = unique()
            register_patient(http, n)
            r = http.post(
                "/v1/auth/patients/login",
                json={"email": f"patient{n}@example.com", "password": "correct horse battery"},
            )
            token = r.json()["access_token"]
            redis.stop()
            r = http.get("/v1/doctors", headers={"authorization": f"Bearer {token}"})
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "redis_unavailable"
            assert http.get("/health/ready").status_code == 503
            assert http.get("/health/live").status_code == 200
    finally:
        redis.stop()
