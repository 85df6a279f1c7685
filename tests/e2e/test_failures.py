"""Failures of dependencies and malformed input reach clients as clear problems, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e._accounts import bearer, login_doctor, register_doctor, register_patient
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


# --- inputs the fuzzer found (each was a 500) ------------------------------------------------
def _doctor_headers(http: httpx.Client, unique: Callable[[], int]) -> dict[str, str]:
    return bearer(login_doctor(http, register_doctor(http, unique())))


def test_deeply_nested_json_is_422(http: httpx.Client) -> None:
    """A body nested past the decoder's depth is malformed input, on public routes too."""
    body = b"[" * 1000 + b"]" * 1000
    r = http.post("/v1/auth/refresh", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "malformed_body"


def test_an_overlong_timezone_is_422(http: httpx.Client, unique: Callable[[], int]) -> None:
    """A timezone name too long for a file name is an invalid timezone, not a crash."""
    rule = {"from": "2099-01-05", "to": "2099-01-05", "weekdays": [1], "start_time": "09:00",
            "end_time": "10:00", "timezone": "x" * 300}  # fmt: skip
    r = http.post("/v1/me/slots", json={"rule": rule}, headers=_doctor_headers(http, unique))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_timezone"


@pytest.mark.parametrize(
    "body",
    [
        {"rule": {"from": "9999-12-27", "to": "9999-12-31", "weekdays": [1, 2, 3, 4, 5, 6, 7],
                  "start_time": "23:00", "end_time": "23:59", "timezone": "Pacific/Kiritimati",
                  "duration_minutes": 30}},
        {"slots": [{"start": "9999-12-31T22:00:00-12:00", "end": "9999-12-31T23:00:00-12:00"}]},
        {"slots": [{"start": "2999-01-01T10:00:00Z", "end": "2999-01-01T11:00:00Z"}]},
    ],
    ids=["rule-at-year-9999", "slot-in-utc-year-10000", "slot-far-ahead"],
)  # fmt: skip
def test_slots_beyond_the_horizon_are_422(
    http: httpx.Client, unique: Callable[[], int], body: dict[str, object]
) -> None:
    """Slots start at most two years ahead; dates near the calendar's end are refused."""
    r = http.post("/v1/me/slots", json=body, headers=_doctor_headers(http, unique))
    assert r.status_code == 422, r.text
    assert r.json()["code"] in ("beyond_horizon", "invalid_time")


def test_a_refused_slot_edit_leaves_the_slot_usable(
    http: httpx.Client, unique: Callable[[], int]
) -> None:
    """Moving a slot to an impossible time is 422 and the slot stays open and editable."""
    headers = _doctor_headers(http, unique)
    start = datetime.now(UTC).replace(microsecond=0, second=0, minute=0) + timedelta(days=3)
    slot = {"start": _z(start), "end": _z(start + timedelta(minutes=50))}
    created = http.post("/v1/me/slots", json={"slots": [slot]}, headers=headers)
    assert created.status_code == 201, created.text
    slot_id = created.json()["items"][0]["id"]
    far = {"start": "9999-12-31T22:00:00-12:00", "end": "9999-12-31T23:00:00-12:00"}
    assert http.patch(f"/v1/me/slots/{slot_id}", json=far, headers=headers).status_code == 422
    later = {"start": _z(start + timedelta(hours=2)), "end": _z(start + timedelta(hours=3))}
    r = http.patch(f"/v1/me/slots/{slot_id}", json=later, headers=headers)
    assert r.status_code == 200, r.text
    listed = http.get("/v1/me/slots", headers=headers).json()["items"]
    assert [(s["id"], s["status"]) for s in listed] == [(slot_id, "open")]


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_unknown_json_fields_are_422_on_every_json_route(
    http: httpx.Client, unique: Callable[[], int]
) -> None:
    """Every route taking a JSON body refuses a field it does not know, with 422, before acting."""
    doctor = register_doctor(http, unique())
    doctor_auth = bearer(login_doctor(http, doctor))
    patient = register_patient(http, unique())
    patient_auth = bearer(
        http.post(
            "/v1/auth/patients/login",
            json={"email": patient["email"], "password": "correct horse battery"},
        ).json()
    )
    any_id = "01JAAAAAAAAAAAAAAAAAAAAAAA"
    routes: list[tuple[str, str, dict[str, str]]] = [
        ("POST", "/v1/doctors", {}),
        ("POST", "/v1/patients", {}),
        ("POST", "/v1/auth/doctors/login", {}),
        ("POST", "/v1/auth/patients/login", {}),
        ("POST", "/v1/auth/refresh", {}),
        ("POST", "/v1/auth/logout", patient_auth),
        ("PATCH", "/v1/me", doctor_auth),
        ("POST", "/v1/me/slots", doctor_auth),
        ("PATCH", f"/v1/me/slots/{doctor['id']}.{any_id}", doctor_auth),
        ("POST", "/v1/appointments", patient_auth),
        ("POST", f"/v1/appointments/{any_id}/refuse", doctor_auth),
        ("POST", f"/v1/appointments/{any_id}/cancel", patient_auth),
        ("POST", f"/v1/appointments/{any_id}/rating", patient_auth),
        ("POST", "/v1/me/shares", patient_auth),
    ]
    for method, path, headers in routes:
        r = http.request(method, path, json={"surprise": 1}, headers=headers)
        assert r.status_code == 422, (method, path, r.status_code, r.text)
    # nothing acted: the doctor still has no slots and the patient is still logged in
    assert http.get("/v1/me/slots", headers=doctor_auth).json()["items"] == []
    assert http.get("/v1/me", headers=patient_auth).status_code == 200
