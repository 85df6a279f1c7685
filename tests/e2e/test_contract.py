"""The HTTP contract around the routes: 405 with ``Allow``, every invalid field reported, the
schema's rules and examples, names where each side needs them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
from websockets.sync.client import connect

from tests.e2e._accounts import (
    PASSWORD,
    bearer,
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


def test_every_invalid_value_of_a_weekly_rule_is_reported(http: httpx.Client) -> None:
    """A rule with every field wrong: one entry a field, keyed by its path in the body, the
    top-level code of the first check (the zone), as when only that one was wrong."""
    doc = bearer(login_doctor(http, register_doctor(http, 11_000_020)))
    rule = {"from": "2026-13-01", "to": "later", "weekdays": [0, 8], "start_time": "25:00",
            "end_time": "9", "timezone": "Mars/Olympus", "duration_minutes": 1,
            "gap_minutes": -1}  # fmt: skip
    r = http.post("/v1/me/slots", headers=doc, json={"rule": rule})
    assert _codes(r) == {
        "rule.timezone": "invalid_timezone",
        **{f"rule.{k}": "invalid_rule" for k in rule if k != "timezone"},
    }
    assert r.json()["code"] == "invalid_timezone"
    # Relations between valid values are reported on the later field.
    ok = {"from": "2030-01-10", "to": "2030-01-01", "weekdays": [1], "start_time": "10:00",
          "end_time": "09:00", "timezone": "America/Sao_Paulo"}  # fmt: skip
    r = http.post("/v1/me/slots", headers=doc, json={"rule": ok})
    assert _codes(r) == {"rule.to": "invalid_rule", "rule.end_time": "invalid_rule"}


def test_every_invalid_slot_and_time_is_reported(http: httpx.Client) -> None:
    """Explicit slots: each bad time by its path, each bad interval by its slot; a moved slot
    reports both of its times."""
    doc = bearer(login_doctor(http, register_doctor(http, 11_000_021)))
    past = {"start": "2020-01-01T10:00:00Z", "end": "2020-01-01T10:50:00Z"}
    slots = [{"start": "soon", "end": "2030-01-01T10:00:00"}, past, {**past, "end": past["start"]}]
    r = http.post("/v1/me/slots", headers=doc, json={"slots": slots})
    assert _codes(r) == {
        "slots[0].start": "invalid_time",
        "slots[0].end": "invalid_time",
        "slots[1]": "slot_in_past",
        "slots[2]": "invalid_slot",
    }
    assert r.json()["code"] == "invalid_time"
    r = http.patch("/v1/me/slots/x1", headers=doc, json={"start": "a", "end": "b"})
    assert _codes(r) == {"start": "invalid_time", "end": "invalid_time"}


def test_every_invalid_value_of_patient_bodies_is_reported(http: httpx.Client) -> None:
    """A rating, a share, an upload's text fields and a password change: every invalid value
    at once, each keyed by the field of that body."""
    pat = bearer(login_patient(http, register_patient(http, 11_000_022)))
    r = http.post(
        "/v1/appointments/x1/rating", headers=pat, json={"stars": 9, "comment": "x" * 1001}
    )
    assert _codes(r) == {"stars": "invalid_stars", "comment": "invalid_comment"}
    groups = ["ok-label", "Not A Label!", "a b"]
    share = {"doctor_id": "x1", "expires_at": "tomorrow", "groups": groups}
    r = http.post("/v1/me/shares", headers=pat, json=share)
    assert _codes(r) == {
        "groups[1]": "invalid_group",
        "groups[2]": "invalid_group",
        "expires_at": "invalid_time",
    }
    r = http.post(
        "/v1/me/records",
        headers=pat,
        data={"kind": "diary", "group": "Not A Label!", "title": "t" * 201},
        files={"file": ("a.txt", b"hello", "text/plain")},
    )
    assert _codes(r) == {"kind": "invalid_kind", "group": "invalid_group", "title": "invalid_title"}
    body = {"current_password": PASSWORD, "new_password": "short"}
    assert _codes(http.post("/v1/me/password", headers=pat, json=body)) == {
        "new_password": "weak_password"
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


def test_the_schema_states_patterns_bounds_and_formats(http: httpx.Client) -> None:
    """The account, weekly-rule, rating and share rules, and the bounds of the query
    parameters, are in the document (tests/unit/test_schema_patterns.py checks the patterns
    against the engine's checks)."""
    schema = http.get("/schema/openapi.json").json()
    parts = schema["components"]["schemas"]
    doctor = parts["DoctorRegistration"]["properties"]
    assert re.search(doctor["crm"]["pattern"], "123456")
    assert not re.search(doctor["crm"]["pattern"], "12")
    assert re.search(doctor["uf"]["pattern"], "sp")
    assert not re.search(doctor["uf"]["pattern"], "XX")
    assert not re.search(doctor["specialty"]["pattern"], "Bad Slug!")
    assert not re.search(parts["PatientRegistration"]["properties"]["cpf"]["pattern"], "123")
    rule = parts["WeeklyRule"]["properties"]
    assert rule["weekdays"]["items"] == {"type": "integer", "minimum": 1, "maximum": 7}
    assert rule["weekdays"]["minItems"] == 1
    assert re.search(rule["start_time"]["pattern"], "08:00")
    assert not re.search(rule["start_time"]["pattern"], "24:00")
    assert rule["from"]["format"] == "date"
    assert (rule["duration_minutes"]["minimum"], rule["duration_minutes"]["maximum"]) == (5, 240)
    assert (rule["gap_minutes"]["minimum"], rule["gap_minutes"]["maximum"]) == (0, 1440)
    assert parts["SlotTimes"]["properties"]["start"]["format"] == "date-time"
    stars = parts["RatingBody"]["properties"]["stars"]
    assert (stars["minimum"], stars["maximum"]) == (1, 5)
    assert parts["RatingBody"]["properties"]["comment"]["maxLength"] == 1000
    assert parts["ShareCreate"]["properties"]["expires_at"]["format"] == "date-time"
    assert parts["PasswordChange"]["properties"]["new_password"]["minLength"] == 8

    def query(path: str) -> dict[str, dict[str, object]]:
        params = schema["paths"][path]["get"]["parameters"]
        return {p["name"]: p["schema"] for p in params if p["in"] == "query"}

    search = query("/v1/doctors")
    assert (search["min_rating"]["minimum"], search["min_rating"]["maximum"]) == (0, 5)
    assert (search["limit"]["minimum"], search["limit"]["maximum"]) == (1, 100)
    assert search["max_km"]["exclusiveMinimum"] == 0
    assert search["lat"]["maximum"] == parts["Location"]["properties"]["lat"]["maximum"]
    appointments = query("/v1/appointments")
    assert set(appointments["status"]["enum"]) == {
        "requested", "confirmed", "refused", "expired", "cancelled"
    }  # fmt: skip
    assert appointments["from"]["format"] == "date-time"
    assert (appointments["limit"]["minimum"], appointments["limit"]["maximum"]) == (1, 100)
    assert re.search(query("/v1/me/records")["kind"]["pattern"], "exam")
    assert not re.search(query("/v1/me/records")["kind"]["pattern"], "diary")


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
