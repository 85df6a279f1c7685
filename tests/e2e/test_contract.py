"""The HTTP contract around the routes: 405 with ``Allow``, every invalid field reported."""

from __future__ import annotations

import re

import httpx

from tests.e2e._accounts import doctor_body, patient_body

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
    """Each operation is described, and its problem responses show a real body (status and
    code as the server sends them), never generated text."""
    paths = http.get("/schema/openapi.json").json()["paths"]
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
