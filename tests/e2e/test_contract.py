"""The HTTP contract around the routes: 405 with ``Allow``, every invalid field reported, the
schema's rules and examples, names where each side needs them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
from websockets.sync.client import connect

from tests.e2e._accounts import (
    doctor_body,
    login_doctor,
    login_patient,
    patient_body,
    register_doctor,
    register_patient,
)

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


def _codes(r: httpx.Response) -> dict[str, str]:
    assert r.status_code == 422, r.text
    return {e["key"]: e["code"] for e in r.json()["errors"]}


def test_a_body_with_three_bad_values_reports_all_three(http: httpx.Client) -> None:
    """Three invalid account values: one entry a field, each with its own code, and the
    top-level code of the first (as when only that one was wrong)."""
    body = doctor_body(11_000_001, crm="12", uf="XX", password="short")
    r = http.post("/v1/doctors", json=body)
    assert _codes(r) == {"crm": "invalid_crm", "uf": "invalid_uf", "password": "weak_password"}
    assert r.json()["code"] == "invalid_crm"


def test_type_errors_and_value_errors_are_reported_together(http: httpx.Client) -> None:
    """msgspec stops at the first mistyped field; the problem still lists every missing,
    unknown and mistyped field and the invalid values of the well-typed ones."""
    body = patient_body(11_000_002, name=5, password="short", color="blue")
    del body["email"]
    r = http.post("/v1/patients", json=body)
    assert _codes(r) == {
        "name": "invalid_type",
        "email": "missing_field",
        "color": "unknown_field",
        "password": "weak_password",
    }
    assert r.json()["code"] == "invalid_input"
    assert all(e["source"] == "body" for e in r.json()["errors"])


def test_nested_fields_are_reported_by_their_path(http: httpx.Client) -> None:
    """A nested object's fields are keyed by their path (``location.lat``)."""
    body = doctor_body(11_000_003, location={"lat": "north", "lon": 500.0}, price_cents=-1)
    codes = _codes(http.post("/v1/doctors", json=body))
    assert codes == {
        "location.lat": "invalid_type",
        "location.lon": "invalid_location",
        "price_cents": "invalid_price",
    }


def test_a_valid_body_is_unaffected(http: httpx.Client) -> None:
    """The fast path: a valid registration is 201 as before."""
    assert http.post("/v1/patients", json=patient_body(11_000_004)).status_code == 201


def test_every_operation_has_a_description_and_real_problem_examples(http: httpx.Client) -> None:
    """Each operation is described, and its problem responses carry examples shaped as the
    server's bodies (the response's own status, a snake_case code), not generated text."""
    paths = http.get("/schema/openapi.json").json()["paths"]
    checked = 0
    for path, item in paths.items():
        for method, op in item.items():
            if method not in _METHODS:
                continue
            assert op.get("description"), (method, path)
            for status, response in op.get("responses", {}).items():
                media = response.get("content", {}).get("application/problem+json")
                if media is None:
                    continue
                examples = list(media.get("examples", {}).values())
                assert examples, (method, path, status)
                for example in examples:
                    assert example["value"]["status"] == int(status), (method, path, status)
                    assert re.fullmatch(r"[a-z_]+", example["value"]["code"])
                    checked += 1
    assert checked > 50  # every route documents its problems; none may drop them silently


def test_the_schema_states_enforced_rules(http: httpx.Client) -> None:
    """The OpenAPI document carries the rules the server enforces: the cancel body and its
    justification are required with their lengths; passwords, prices and coordinates have
    their bounds."""
    schema = http.get("/schema/openapi.json").json()
    cancel = schema["paths"]["/v1/appointments/{appointment_id}/cancel"]["post"]
    assert cancel["requestBody"]["required"] is True
    parts = schema["components"]["schemas"]
    justification = parts["CancelBody"]["properties"]["justification"]
    assert parts["CancelBody"]["required"] == ["justification"]
    assert (justification["minLength"], justification["maxLength"]) == (10, 1000)
    password = parts["PatientRegistration"]["properties"]["password"]
    assert (password["minLength"], password["maxLength"]) == (8, 256)
    price = parts["DoctorRegistration"]["properties"]["price_cents"]
    assert (price["minimum"], price["maximum"]) == (0, 100_000_000)
    assert parts["Location"]["properties"]["lon"]["maximum"] == 180
    assert parts["DoctorRegistration"]["properties"]["name"]["pattern"] == r"\S"


def test_options_lists_every_method_of_the_path(http: httpx.Client) -> None:
    """OPTIONS answers ``Allow`` with every method the path serves, also when the methods
    come from handlers in different modules (GET and POST /v1/appointments)."""
    paths = http.get("/schema/openapi.json").json()["paths"]
    for path, item in paths.items():
        served = {m for m in _METHODS if m in item}
        r = http.options(_concrete(path))
        assert r.status_code == 204, (path, r.status_code)
        allowed = {m.strip().lower() for m in r.headers["allow"].split(",")}
        assert allowed == served | {"options"}, (path, allowed)


def test_closed_bodies_say_additional_properties_false(http: httpx.Client) -> None:
    """Every request body that refuses unknown fields says so in the schema."""
    schemas = http.get("/schema/openapi.json").json()["components"]["schemas"]
    for name in ("DoctorRegistration", "PatientRegistration", "CancelBody", "CreateSlots"):
        assert schemas[name]["additionalProperties"] is False, name
    assert schemas["Location"]["additionalProperties"] is False


def test_each_side_sees_the_other_partys_name(http: httpx.Client) -> None:
    """The doctor's view of an appointment (REST and the requested event) names the patient,
    never with the CPF; the patient's view names the doctor and the specialty."""
    doctor = register_doctor(http, 11_000_010, name="Dra. Marta Reis", specialty="dermatologia")
    patient = register_patient(http, 11_000_011, name="Caio Prado")
    doc = {"Authorization": f"Bearer {login_doctor(http, doctor)['access_token']}"}
    pat_token = login_patient(http, patient)["access_token"]
    pat = {"Authorization": f"Bearer {pat_token}"}
    start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    slot = {"start": start.isoformat().replace("+00:00", "Z"),
            "end": (start + timedelta(minutes=50)).isoformat().replace("+00:00", "Z")}  # fmt: skip
    r = http.post("/v1/me/slots", headers=doc, json={"slots": [slot]})
    assert r.status_code == 201, r.text
    slot_id = r.json()["items"][0]["id"]
    url = str(http.base_url).replace("http", "ws", 1).rstrip("/") + "/v1/ws"
    with connect(url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": doc["Authorization"][7:]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        booked = http.post("/v1/appointments", headers=pat, json={"slot_id": slot_id})
        assert booked.status_code == 201, booked.text
        event = json.loads(ws.recv(timeout=10))
    assert event["data"]["patient_name"] == "Caio Prado"
    assert (booked.json()["doctor_name"], booked.json()["doctor_specialty"]) == (
        "Dra. Marta Reis",
        "dermatologia",
    )
    appt_id = booked.json()["id"]
    as_doctor = http.get(f"/v1/appointments/{appt_id}", headers=doc).json()
    assert as_doctor["patient_name"] == "Caio Prado"
    assert "cpf" not in json.dumps(as_doctor)
    assert "doctor_name" not in as_doctor
    listed = http.get("/v1/appointments", headers=doc).json()["items"]
    assert [a["patient_name"] for a in listed if a["id"] == appt_id] == ["Caio Prado"]
    accepted = http.post(f"/v1/appointments/{appt_id}/accept", headers=doc).json()
    assert accepted["patient_name"] == "Caio Prado"
    as_patient = http.get(f"/v1/appointments/{appt_id}", headers=pat).json()
    assert as_patient["doctor_name"] == "Dra. Marta Reis"
    assert "patient_name" not in as_patient
