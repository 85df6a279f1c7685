"""Logs of the real server (docs/API.md "Operations"): JSON lines, request ids, the access line,
business events, and never a token, password, CPF or e-mail address."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e._accounts import (
    PASSWORD,
    bearer,
    login_doctor,
    login_patient,
    punctuated,
    register_doctor,
    register_patient,
)
from tests.support import RedisServer, ServerProcess, wait_until

ACCESS_FIELDS = {"time", "level", "logger", "message", "method", "route", "status"}
ACCESS_FIELDS |= {"duration_ms", "request_id", "user_id"}


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def json_server(
    module_redis: RedisServer, start_server: Callable[..., ServerProcess]
) -> ServerProcess:
    return start_server(
        HEALTHMED_REDIS_URL=module_redis.url, HEALTHMED_ENV="test", HEALTHMED_LOG_FORMAT="json"
    )


def _lines(server: ServerProcess) -> list[dict[str, Any]]:
    """Every line of the server's output, each of which must be one JSON object."""
    records = []
    for line in server.logs().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)  # a line that is not JSON fails here
        assert isinstance(record, dict), line
        records.append(record)
    return records


def _session(http: httpx.Client, n: int) -> dict[str, Any]:
    """A doctor and a patient, logged in; every secret they own, for the no-leak check."""
    doctor = register_doctor(http, n)
    patient = register_patient(http, n + 1)
    doctor_pair = login_doctor(http, doctor)
    patient_pair = login_patient(http, patient)
    return {
        "doctor": doctor,
        "patient": patient,
        "doc": bearer(doctor_pair),
        "pat": bearer(patient_pair),
        "secrets": [
            PASSWORD,
            patient["email"],
            doctor["email"],
            patient["cpf"],
            punctuated(patient["cpf"]),
            *(pair[k] for pair in (doctor_pair, patient_pair) for k in pair if "token" in k),
        ],
    }


def test_json_log_has_request_ids_access_lines_events_and_no_secrets(
    json_server: ServerProcess, unique: Callable[[], int]
) -> None:
    """With HEALTHMED_LOG_FORMAT=json every line is a JSON object; each response carries
    X-Request-ID (the client's sane one, else a new one) and its access line carries the same
    id with method, route template, status, duration and user id; booking, decision,
    cancellation, upload, share and failed login are logged as events; no token, password,
    CPF or e-mail address appears anywhere in the log."""
    with httpx.Client(base_url=json_server.url, timeout=30) as http:
        s = _session(http, unique())
        wrong = http.post(
            "/v1/auth/patients/login",
            json={"email": s["patient"]["email"], "password": "not the password at all"},
        )
        assert wrong.status_code == 401
        start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=3)
        slots = http.post(
            "/v1/me/slots",
            headers=s["doc"],
            json={
                "slots": [
                    {
                        "start": _iso(start + timedelta(hours=h)),
                        "end": _iso(start + timedelta(hours=h, minutes=50)),
                    }
                    for h in (0, 1)
                ]
            },
        )
        assert slots.status_code == 201, slots.text
        first, second = (item["id"] for item in slots.json()["items"])
        own_id = "client-chosen.id_42"
        booked = http.post(
            "/v1/appointments",
            headers={**s["pat"], "X-Request-ID": own_id},
            json={"slot_id": first},
        )
        assert booked.status_code == 201, booked.text
        assert booked.headers["x-request-id"] == own_id
        appt = booked.json()["id"]
        assert http.post(f"/v1/appointments/{appt}/accept", headers=s["doc"]).status_code == 200
        cancelled = http.post(
            f"/v1/appointments/{appt}/cancel",
            headers=s["pat"],
            json={"justification": "cannot make it after all"},
        )
        assert cancelled.status_code == 200, cancelled.text
        other = http.post("/v1/appointments", headers=s["pat"], json={"slot_id": second})
        assert (
            http.post(f"/v1/appointments/{other.json()['id']}/refuse", headers=s["doc"]).status_code
            == 200
        )
        upload = http.post(
            "/v1/me/records",
            headers=s["pat"],
            data={"kind": "exam", "title": "blood test"},
            files={"file": ("exam.txt", b"glucose 90 mg/dL\n", "text/plain")},
        )
        assert upload.status_code == 201, upload.text
        share = http.post(
            "/v1/me/shares",
            headers=s["pat"],
            json={
                "doctor_id": s["doctor"]["id"],
                "record_ids": [upload.json()["id"]],
                "expires_at": _iso(start + timedelta(days=5)),
            },
        )
        assert share.status_code == 201, share.text
        insane = http.get("/health/live", headers={"X-Request-ID": "no spaces allowed" + "x" * 60})
        fresh = insane.headers["x-request-id"]
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", fresh)
        assert fresh != "no spaces allowed" + "x" * 60
        missing = http.get("/v1/definitely-not-a-route")
        assert missing.status_code == 404
        assert missing.headers["x-request-id"]

    def access_of(request_id: str) -> list[dict[str, Any]]:
        return [
            r for r in _lines(json_server)
            if r["logger"] == "healthmed.access" and r["request_id"] == request_id
        ]  # fmt: skip

    wait_until(lambda: access_of(missing.headers["x-request-id"]), 10, "the access lines")
    records = _lines(json_server)
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    (booking_line,) = access_of(own_id)
    assert booking_line.keys() >= ACCESS_FIELDS
    assert booking_line["method"] == "POST"
    assert booking_line["route"] == "/v1/appointments"
    assert booking_line["status"] == 201
    assert booking_line["user_id"] == s["patient"]["id"]
    assert isinstance(booking_line["duration_ms"], float | int)
    (accept_line,) = [
        r for r in records
        if r["logger"] == "healthmed.access" and r["route"].endswith("/accept")
    ]  # fmt: skip
    assert "{" in accept_line["route"]
    assert appt not in accept_line["route"]
    assert accept_line["user_id"] == s["doctor"]["id"]
    (missing_line,) = access_of(missing.headers["x-request-id"])
    assert missing_line["status"] == 404
    assert access_of(fresh)[0]["route"] == "/health/live"
    events = {r["event"]: r for r in records if r["logger"] == "healthmed.events"}
    for name in (
        "appointment.requested",
        "appointment.accepted",
        "appointment.refused",
        "appointment.cancelled",
        "record.uploaded",
        "share.created",
        "login.failed",
    ):
        assert name in events, f"no {name} event in the log"
    requested = [r for r in records if r.get("event") == "appointment.requested"]
    assert own_id in {r["request_id"] for r in requested}
    assert events["login.failed"]["code"] == "invalid_credentials"
    text = json_server.logs()
    for secret in s["secrets"]:
        assert secret not in text, "a secret reached the log"
    assert "glucose" not in text
    assert "blood test" not in text
