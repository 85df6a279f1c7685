"""Accounts and authentication over HTTP against the real server process: registration and
its bad inputs, login, tokens (tampered, alg none, expired), refresh rotation and reuse,
logout, roles, login limits, erasure and export, restart."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e._accounts import (
    PASSWORD,
    bearer,
    cpf_for,
    doctor_body,
    login_doctor,
    login_patient,
    patient_body,
    punctuated,
    register_doctor,
    register_patient,
)
from tests.support import ServerProcess

Unique = Callable[[], int]


def _problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = dict(r.json())
    assert {"status", "title", "detail", "code"} <= body.keys()
    if code is not None:
        assert body["code"] == code, body
    return body


def _secret(server: ServerProcess) -> str:
    return (server.data_dir / "secrets" / "jwt_secret").read_text().strip()


def _claims(user_id: str, role: str = "patient", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": user_id,
        "role": role,
        "iss": "healthmed",
        "aud": "healthmed-api",
        "iat": now,
        "exp": now + 300,
        "jti": f"forged-{now}",
    }
    claims.update(overrides)
    return claims


# --- registration ---------------------------------------------------------------------------
def test_doctor_registration_returns_the_profile(http: httpx.Client, unique: Unique) -> None:
    """201 with id, normalised fields, price in BRL, an empty rating and the own e-mail."""
    n = unique()
    body = doctor_body(n, uf="rj", specialty="Pediatria", email=f"Dr{n}@Example.com")
    r = http.post("/v1/doctors", json=body)
    assert r.status_code == 201, r.text
    profile = r.json()
    assert profile["id"]
    assert (profile["uf"], profile["specialty"]) == ("RJ", "pediatria")
    assert profile["email"] == f"dr{n}@example.com"
    assert profile["price"] == {"amount_cents": 25_000, "currency": "BRL"}
    assert profile["rating"] == {"average": None, "count": 0}
    assert profile["created_at"].endswith("Z")
    assert "password" not in r.text
    assert PASSWORD not in r.text


def test_patient_cpf_with_punctuation_is_stored_as_digits(
    http: httpx.Client, unique: Unique
) -> None:
    """``529.982.247-25`` style input comes back as 11 digits."""
    n = unique()
    profile = register_patient(http, n, cpf=punctuated(cpf_for(n)))
    assert profile["cpf"] == cpf_for(n)
    assert profile["role"] == "patient"


@pytest.mark.parametrize(
    "cpf", ["52998224724", "111.111.111-11", "1234567890", "abc.def.ghi-jk"], ids=str
)
def test_invalid_cpf_is_422(http: httpx.Client, unique: Unique, cpf: str) -> None:
    """Bad check digits, repeated digits or a malformed CPF: 422 ``invalid_cpf``."""
    r = http.post("/v1/patients", json=patient_body(unique(), cpf=cpf))
    _problem(r, 422, "invalid_cpf")


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("crm", "123", "invalid_crm"),
        ("crm", "123456789", "invalid_crm"),
        ("uf", "XX", "invalid_uf"),
        ("email", "not-an-email", "invalid_email"),
        ("password", "short", "weak_password"),
        ("specialty", "Clínica Geral", "invalid_specialty"),
        ("price_cents", -1, "invalid_price"),
        ("location", {"lat": 123, "lon": 0}, "invalid_location"),
    ],
)
def test_invalid_doctor_fields_are_422(
    http: httpx.Client, unique: Unique, field: str, value: Any, code: str
) -> None:
    """Each invalid doctor field is a 422 with its own code."""
    r = http.post("/v1/doctors", json=doctor_body(unique(), **{field: value}))
    _problem(r, 422, code)


@pytest.mark.parametrize(
    "path", ["/v1/doctors", "/v1/patients", "/v1/auth/doctors/login", "/v1/auth/refresh"]
)
def test_unknown_json_field_is_422(http: httpx.Client, unique: Unique, path: str) -> None:
    """Every body rejects fields the contract does not name."""
    n = unique()
    body: dict[str, Any] = {
        "/v1/doctors": doctor_body(n),
        "/v1/patients": patient_body(n),
        "/v1/auth/doctors/login": {"crm": "1234", "uf": "SP", "password": PASSWORD},
        "/v1/auth/refresh": {"refresh_token": "a.b"},
    }[path]
    body["is_admin"] = True
    _problem(http.post(path, json=body), 422)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'{"name": 1}',
        b'{"price_cents": "100"}',
        b"\xff\xfe",
        b'{"location": {"lat": "x"}}',
    ],
    ids=["empty", "null", "array", "wrong-type", "string-price", "not-utf8", "nested"],
)
def test_garbage_bodies_never_500(http: httpx.Client, body: bytes) -> None:
    """Malformed or mistyped bodies are client errors, never a 500."""
    r = http.post("/v1/doctors", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text


def test_duplicate_email_crm_and_cpf_are_409(http: httpx.Client, unique: Unique) -> None:
    """Same e-mail (any case), same CRM/UF, same CPF: 409 ``duplicate_account``."""
    n = unique()
    register_doctor(http, n)
    again = http.post("/v1/doctors", json=doctor_body(unique(), email=f"DOCTOR{n}@example.com"))
    _problem(again, 409, "duplicate_account")
    same_crm = http.post("/v1/doctors", json=doctor_body(unique(), crm=f"{n % 10**8:08d}"))
    _problem(same_crm, 409, "duplicate_account")
    p = unique()
    register_patient(http, p)
    same_cpf = http.post("/v1/patients", json=patient_body(unique(), cpf=punctuated(cpf_for(p))))
    _problem(same_cpf, 409, "duplicate_account")
    same_email = http.post(
        "/v1/patients", json=patient_body(unique(), email=f"patient{p}@example.com")
    )
    _problem(same_email, 409, "duplicate_account")


# --- login and tokens -----------------------------------------------------------------------
def test_login_returns_a_bearer_pair(http: httpx.Client, unique: Unique) -> None:
    """Doctor login by CRM/UF gives access and refresh tokens; the access token opens /v1/me."""
    profile = register_doctor(http, unique())
    pair = login_doctor(http, profile)
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 900
    me = http.get("/v1/me", headers=bearer(pair))
    assert me.status_code == 200
    assert me.json()["id"] == profile["id"]
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert {"sub", "role", "iss", "aud", "iat", "exp", "jti"} <= claims.keys()


def test_patient_login_by_cpf_and_by_both(http: httpx.Client, unique: Unique) -> None:
    """CPF alone works; e-mail and CPF of two different accounts is 401; neither is 422."""
    a, b = register_patient(http, unique()), register_patient(http, unique())
    r = http.post(
        "/v1/auth/patients/login", json={"cpf": punctuated(a["cpf"]), "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    r = http.post(
        "/v1/auth/patients/login",
        json={"email": a["email"], "cpf": a["cpf"], "password": PASSWORD},
    )
    assert r.status_code == 200, r.text
    r = http.post(
        "/v1/auth/patients/login",
        json={"email": a["email"], "cpf": b["cpf"], "password": PASSWORD},
    )
    _problem(r, 401, "invalid_credentials")
    _problem(http.post("/v1/auth/patients/login", json={"password": PASSWORD}), 422)


def test_wrong_password_and_unknown_account_get_identical_401(
    http: httpx.Client, unique: Unique
) -> None:
    """The body does not reveal whether the account exists."""
    profile = register_patient(http, unique())
    wrong = http.post(
        "/v1/auth/patients/login", json={"email": profile["email"], "password": "wrong-password"}
    )
    unknown = http.post(
        "/v1/auth/patients/login",
        json={"email": f"ghost{unique()}@example.com", "password": "wrong-password"},
    )
    _problem(wrong, 401, "invalid_credentials")
    assert wrong.content == unknown.content
    assert wrong.status_code == unknown.status_code
    doctor_unknown = http.post(
        "/v1/auth/doctors/login", json={"crm": "99999999", "uf": "AC", "password": "whatever1"}
    )
    assert doctor_unknown.content == wrong.content


def test_tampered_token_is_401(http: httpx.Client, unique: Unique) -> None:
    """A token whose payload was edited (patient → doctor) is refused."""
    pair = login_patient(http, register_patient(http, unique()))
    header, payload, signature = pair["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "doctor"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    forged = f"{header}.{forged_payload}.{signature}"
    _problem(
        http.get("/v1/me", headers={"Authorization": f"Bearer {forged}"}), 401, "invalid_token"
    )


def test_alg_none_token_is_401(http: httpx.Client, unique: Unique) -> None:
    """An unsigned token with valid claims is refused."""
    profile = register_patient(http, unique())
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
    payload = (
        base64.urlsafe_b64encode(json.dumps(_claims(profile["id"])).encode()).decode().rstrip("=")
    )
    r = http.get("/v1/me", headers={"Authorization": f"Bearer {header}.{payload}."})
    _problem(r, 401, "invalid_token")


def test_expired_token_is_401(http: httpx.Client, server: ServerProcess, unique: Unique) -> None:
    """A correctly signed token past its ``exp`` is ``token_expired``; a fresh one works."""
    profile = register_patient(http, unique())
    now = int(time.time())
    secret = _secret(server)
    expired = jwt.encode(_claims(profile["id"], iat=now - 1000, exp=now - 100), secret, "HS256")
    r = http.get("/v1/me", headers={"Authorization": f"Bearer {expired}"})
    _problem(r, 401, "token_expired")
    fresh = jwt.encode(_claims(profile["id"]), secret, "HS256")
    assert http.get("/v1/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


@pytest.mark.parametrize("header", ["", "Bearer", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt"])
def test_missing_or_malformed_authorization_is_401(http: httpx.Client, header: str) -> None:
    """No token, another scheme or garbage: 401."""
    _problem(http.get("/v1/me", headers={"Authorization": header} if header else {}), 401)


def test_refresh_rotates_and_reuse_revokes_the_family(http: httpx.Client, unique: Unique) -> None:
    """A spent refresh token is 401 ``refresh_token_reused`` and its successor dies too."""
    first = login_patient(http, register_patient(http, unique()))
    r = http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert http.get("/v1/me", headers=bearer(second)).status_code == 200
    reuse = http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    _problem(reuse, 401, "refresh_token_reused")
    after = http.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    _problem(after, 401)


def test_logout_revokes_both_tokens(http: httpx.Client, unique: Unique) -> None:
    """204; then the access token and the refresh token are refused; other logins live on."""
    profile = register_patient(http, unique())
    pair, other = login_patient(http, profile), login_patient(http, profile)
    r = http.post(
        "/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}, headers=bearer(pair)
    )
    assert r.status_code == 204, r.text
    _problem(http.get("/v1/me", headers=bearer(pair)), 401, "token_revoked")
    _problem(http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401)
    assert http.get("/v1/me", headers=bearer(other)).status_code == 200
    _problem(http.post("/v1/auth/logout", json={"refresh_token": "x.y"}), 401)


# --- roles and profile ----------------------------------------------------------------------
def test_patch_me_is_for_doctors(http: httpx.Client, unique: Unique) -> None:
    """A patient's PATCH /v1/me is 403; a doctor's changes only the fields sent."""
    patient = login_patient(http, register_patient(http, unique()))
    _problem(http.patch("/v1/me", json={"name": "X"}, headers=bearer(patient)), 403, "wrong_role")
    profile = register_doctor(http, unique())
    doctor = login_doctor(http, profile)
    r = http.patch(
        "/v1/me",
        json={"price_cents": 31_000, "city": "Campinas", "location": {"lat": -22.9, "lon": -47.06}},
        headers=bearer(doctor),
    )
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["price"]["amount_cents"] == 31_000
    assert updated["city"] == "Campinas"
    assert updated["name"] == profile["name"]
    assert http.get("/v1/me", headers=bearer(doctor)).json() == updated
    _problem(http.patch("/v1/me", json={"crm": "1111"}, headers=bearer(doctor)), 422)
    _problem(http.patch("/v1/me", json={"price_cents": -5}, headers=bearer(doctor)), 422)


def test_public_doctor_profile_hides_the_email(http: httpx.Client, unique: Unique) -> None:
    """GET /v1/doctors/{id} needs a token, shows the public card, 404 for unknown ids."""
    profile = register_doctor(http, unique())
    patient = login_patient(http, register_patient(http, unique()))
    _problem(http.get(f"/v1/doctors/{profile['id']}"), 401)
    r = http.get(f"/v1/doctors/{profile['id']}", headers=bearer(patient))
    assert r.status_code == 200
    assert r.json()["crm"] == profile["crm"]
    assert "email" not in r.json()
    _problem(http.get("/v1/doctors/01NOSUCHDOCTOR", headers=bearer(patient)), 404)
    patient_id = http.get("/v1/me", headers=bearer(patient)).json()["id"]
    _problem(http.get(f"/v1/doctors/{patient_id}", headers=bearer(patient)), 404)


# --- limits ---------------------------------------------------------------------------------
def test_repeated_failures_on_one_account_are_429(
    start_server: Callable[..., ServerProcess], unique: Unique
) -> None:
    """With a limit of 2: two 401s, then 429 with Retry-After even for the right password."""
    srv = start_server(HEALTHMED_LOGIN_FAIL_LIMIT_ACCOUNT="2")
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        profile = register_patient(http, unique())
        bad = {"email": profile["email"], "password": "wrong-password"}
        for _ in range(2):
            _problem(http.post("/v1/auth/patients/login", json=bad), 401)
        good = {"email": profile["email"], "password": PASSWORD}
        r = http.post("/v1/auth/patients/login", json=good)
        body = _problem(r, 429, "too_many_attempts")
        assert int(r.headers["retry-after"]) > 0
        assert body["retry_after"] > 0
        other = register_patient(http, unique())
        assert (
            http.post(
                "/v1/auth/patients/login", json={"email": other["email"], "password": PASSWORD}
            ).status_code
            == 200
        )


def test_repeated_failures_from_one_address_are_429(
    start_server: Callable[..., ServerProcess], unique: Unique
) -> None:
    """Guessing across many accounts from one address hits the address limit."""
    srv = start_server(HEALTHMED_LOGIN_FAIL_LIMIT_ADDRESS="3")
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        for _ in range(3):
            body = {"email": f"ghost{unique()}@example.com", "password": "wrong-password"}
            _problem(http.post("/v1/auth/patients/login", json=body), 401)
        body = {"email": f"ghost{unique()}@example.com", "password": "wrong-password"}
        _problem(http.post("/v1/auth/patients/login", json=body), 429, "too_many_attempts")


def test_a_forged_forwarded_for_does_not_dodge_the_address_limit(
    start_server: Callable[..., ServerProcess], unique: Unique
) -> None:
    """With no trusted proxy configured, X-Forwarded-For from the client is ignored."""
    srv = start_server(HEALTHMED_LOGIN_FAIL_LIMIT_ADDRESS="3")
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        statuses = []
        for i in range(6):
            body = {"email": f"ghost{unique()}@example.com", "password": "wrong-password"}
            headers = {"x-forwarded-for": f"198.51.100.{i}"}
            statuses.append(
                http.post("/v1/auth/patients/login", json=body, headers=headers).status_code
            )
        assert statuses == [401, 401, 401, 429, 429, 429]


def test_a_trusted_proxy_passes_on_the_client_address(
    start_server: Callable[..., ServerProcess], unique: Unique
) -> None:
    """Behind a trusted proxy (a CIDR), each forwarded client has its own address limit."""
    srv = start_server(
        HEALTHMED_LOGIN_FAIL_LIMIT_ADDRESS="2", HEALTHMED_TRUSTED_PROXIES="127.0.0.0/8"
    )
    with httpx.Client(base_url=srv.url, timeout=30) as http:

        def attempt(client: str) -> int:
            body = {"email": f"ghost{unique()}@example.com", "password": "wrong-password"}
            headers = {"x-forwarded-for": f"{client}, 127.0.0.5"}
            return http.post("/v1/auth/patients/login", json=body, headers=headers).status_code

        assert [attempt("203.0.113.9") for _ in range(3)] == [401, 401, 429]
        assert attempt("203.0.113.10") == 401


# --- LGPD -----------------------------------------------------------------------------------
def test_export_then_erasure(http: httpx.Client, unique: Unique) -> None:
    """Export holds the profile; erasure without the right password is 422 and changes
    nothing; after DELETE /v1/me the tokens die, login fails like a wrong password and the
    e-mail and CPF can register again."""
    n = unique()
    profile = register_patient(http, n)
    pair = login_patient(http, profile)
    export = http.get("/v1/me/export", headers=bearer(pair))
    assert export.status_code == 200
    assert export.json()["profile"]["email"] == profile["email"]
    assert export.json()["profile"]["cpf"] == profile["cpf"]
    r = http.request("DELETE", "/v1/me", json={"password": "not my password"}, headers=bearer(pair))
    _problem(r, 422, "invalid_password")
    _problem(http.request("DELETE", "/v1/me", headers=bearer(pair)), 422)
    assert http.get("/v1/me", headers=bearer(pair)).status_code == 200
    r = http.request("DELETE", "/v1/me", json={"password": PASSWORD}, headers=bearer(pair))
    assert r.status_code == 204
    _problem(http.get("/v1/me", headers=bearer(pair)), 401)
    _problem(http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401)
    r = http.post("/v1/auth/patients/login", json={"email": profile["email"], "password": PASSWORD})
    _problem(r, 401, "invalid_credentials")
    register_patient(http, n)


def test_erased_doctor_leaves_the_directory(http: httpx.Client, unique: Unique) -> None:
    """An erased doctor is no longer found, by search or by id."""
    slug = f"erasure-{unique()}"
    profile = register_doctor(http, unique(), specialty=slug)
    doctor = login_doctor(http, profile)
    patient = login_patient(http, register_patient(http, unique()))
    found = http.get("/v1/doctors", params={"specialty": slug}, headers=bearer(patient)).json()
    assert [d["id"] for d in found["items"]] == [profile["id"]]
    r = http.request("DELETE", "/v1/me", json={"password": PASSWORD}, headers=bearer(doctor))
    assert r.status_code == 204
    found = http.get("/v1/doctors", params={"specialty": slug}, headers=bearer(patient)).json()
    assert found["items"] == []
    _problem(http.get(f"/v1/doctors/{profile['id']}", headers=bearer(patient)), 404)
    r = http.post(
        "/v1/auth/doctors/login",
        json={"crm": profile["crm"], "uf": profile["uf"], "password": PASSWORD},
    )
    _problem(r, 401, "invalid_credentials")


# --- restart --------------------------------------------------------------------------------
def test_restart_keeps_accounts_and_rebuilds_the_directory(
    start_server: Callable[..., ServerProcess], unique: Unique
) -> None:
    """Embedded mode (in-process Redis): after a restart logins and tokens still work and the
    directory is rebuilt from the store."""
    srv = start_server()
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        doctor = register_doctor(http, unique(), specialty="neurologia")
        patient = register_patient(http, unique())
        pair = login_patient(http, patient)
    srv.restart()
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        assert http.get("/v1/me", headers=bearer(pair)).status_code == 200
        login_doctor(http, doctor)
        fresh = login_patient(http, patient)
        r = http.get("/v1/doctors", params={"specialty": "neurologia"}, headers=bearer(fresh))
        assert [d["id"] for d in r.json()["items"]] == [doctor["id"]]
        assert http.get("/v1/specialties").json() == {
            "items": [{"slug": "neurologia", "doctors": 1}]
        }
        refreshed = http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200
