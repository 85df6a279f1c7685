"""Acceptance over HTTP: TOTP 2FA (enrolment, two-step login, replay, recovery codes,
disabling), step-up erasure and password change, on the real server process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pyotp

from tests.e2e._accounts import (
    PASSWORD,
    bearer,
    login_doctor,
    login_patient,
    register_doctor,
    register_patient,
)
from tests.support import ServerProcess

Unique = Callable[[], int]


def _login(http: httpx.Client, email: str) -> httpx.Response:
    return http.post("/v1/auth/patients/login", json={"email": email, "password": PASSWORD})


def _enable_2fa(http: httpx.Client, auth: dict[str, str]) -> tuple[str, list[str]]:
    # A step-up: the bearer token alone does not enrol, nor does a wrong password.
    bare = http.post("/v1/me/mfa/totp", headers=auth)
    assert bare.status_code == 422, bare.text
    wrong = http.post("/v1/me/mfa/totp", json={"password": "not the password"}, headers=auth)
    assert (wrong.status_code, wrong.json()["code"]) == (422, "invalid_password")
    r = http.post("/v1/me/mfa/totp", json={"password": PASSWORD}, headers=auth)
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    assert r.json()["otpauth_uri"].startswith("otpauth://totp/Health%26Med:")
    bad = http.post("/v1/me/mfa/totp/activate", json={"code": "000000"}, headers=auth)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_code")
    r = http.post("/v1/me/mfa/totp/activate", json={"code": pyotp.TOTP(secret).now()}, headers=auth)
    assert r.status_code == 200, r.text
    return secret, list(r.json()["recovery_codes"])


def _second_step(http: httpx.Client, email: str, code: str) -> httpx.Response:
    first = _login(http, email)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["mfa_required"] is True
    assert "access_token" not in body
    assert "refresh_token" not in body
    assert body["expires_in"] == 300
    return http.post("/v1/auth/mfa", json={"mfa_token": body["mfa_token"], "code": code})


def test_two_factor_login_end_to_end(
    http: httpx.Client, server: ServerProcess, unique: Unique
) -> None:
    """Enrol, activate, log in in two steps; a TOTP code and a recovery code each work
    once; enrolling again is 409; the export lists the events and holds no secret; the
    server log holds neither the secret nor a code."""
    profile = register_patient(http, unique())
    auth = bearer(login_patient(http, profile))
    secret, codes = _enable_2fa(http, auth)
    assert len(codes) == 10
    again = http.post("/v1/me/mfa/totp", json={"password": PASSWORD}, headers=auth)
    assert (again.status_code, again.json()["code"]) == (409, "mfa_active")

    wrong = _second_step(http, profile["email"], "123456")
    assert wrong.status_code == 401
    # The activation spent this step's code; the next step's is within the drift window.
    code = pyotp.TOTP(secret).at(time.time() + 30)
    ok = _second_step(http, profile["email"], code)
    assert ok.status_code == 200, ok.text
    pair: dict[str, Any] = ok.json()
    assert http.get("/v1/me", headers=bearer(pair)).status_code == 200
    assert _second_step(http, profile["email"], code).status_code == 401  # replayed

    assert _second_step(http, profile["email"], codes[0]).status_code == 200
    assert _second_step(http, profile["email"], codes[0]).status_code == 401

    export = http.get("/v1/me/export", headers=bearer(pair))
    assert export.status_code == 200
    kinds = [e["kind"] for e in export.json()["security_events"]]
    assert kinds == ["mfa.enrolled", "mfa.activated", "mfa.recovery_code_used"]
    assert export.json()["mfa"] == {"active": True}
    for hidden in (secret, codes[1], code):
        assert hidden not in export.text
        assert hidden not in server.logs()


def test_wrong_codes_reach_the_login_limit(http: httpx.Client, unique: Unique) -> None:
    """Guessing codes behind a known password ends in 429, like guessing passwords."""
    profile = register_patient(http, unique())
    secret, _ = _enable_2fa(http, bearer(login_patient(http, profile)))
    token = _login(http, profile["email"]).json()["mfa_token"]
    statuses = [
        http.post("/v1/auth/mfa", json={"mfa_token": token, "code": "000001"}).status_code
        for _ in range(6)
    ]
    assert statuses[0] == 401
    assert statuses[-1] == 429
    code = pyotp.TOTP(secret).at(time.time() + 30)
    assert http.post("/v1/auth/mfa", json={"mfa_token": token, "code": code}).status_code == 429


def test_disabling_2fa_and_step_up_erasure(http: httpx.Client, unique: Unique) -> None:
    """DELETE /v1/me/mfa wants a code (422 otherwise); erasure with 2FA on wants the password
    and a code (422 invalid_code without), and then works."""
    first = register_patient(http, unique())
    auth = bearer(login_patient(http, first))
    _, codes = _enable_2fa(http, auth)
    r = http.request("DELETE", "/v1/me/mfa", json={"code": "999999"}, headers=auth)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_code")
    assert (
        http.request("DELETE", "/v1/me/mfa", json={"code": codes[0]}, headers=auth).status_code
        == 204
    )
    assert "access_token" in _login(http, first["email"]).json()

    second = register_patient(http, unique())
    auth = bearer(login_patient(http, second))
    _, codes = _enable_2fa(http, auth)
    r = http.request("DELETE", "/v1/me", json={"password": PASSWORD}, headers=auth)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_code")
    r = http.request("DELETE", "/v1/me", json={"password": "wrong password"}, headers=auth)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_password")
    r = http.request(
        "DELETE", "/v1/me", json={"password": PASSWORD, "code": codes[5]}, headers=auth
    )
    assert r.status_code == 204
    assert _login(http, second["email"]).status_code == 401


def test_password_change_revokes_the_other_sessions(http: httpx.Client, unique: Unique) -> None:
    """After POST /v1/me/password the other login's tokens are refused, this one goes on,
    and only the new password logs in."""
    profile = register_patient(http, unique())
    mine, other = login_patient(http, profile), login_patient(http, profile)
    r = http.post(
        "/v1/me/password",
        json={"current_password": "not it at all", "new_password": "a new passphrase"},
        headers=bearer(mine),
    )
    assert (r.status_code, r.json()["code"]) == (422, "invalid_password")
    r = http.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "a new passphrase"},
        headers=bearer(mine),
    )
    assert r.status_code == 204, r.text
    assert http.get("/v1/me", headers=bearer(other)).status_code == 401
    refreshed = http.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert refreshed.status_code == 401
    assert http.get("/v1/me", headers=bearer(mine)).status_code == 200
    assert (
        http.post("/v1/auth/refresh", json={"refresh_token": mine["refresh_token"]}).status_code
        == 200
    )
    assert _login(http, profile["email"]).status_code == 401
    r = http.post(
        "/v1/auth/patients/login", json={"email": profile["email"], "password": "a new passphrase"}
    )
    assert r.status_code == 200


def test_openapi_documents_the_security_routes(http: httpx.Client) -> None:
    """The schema lists the 2FA and password routes, and DELETE /v1/me takes a body with
    the password (and an optional code)."""
    paths = http.get("/schema/openapi.json").json()["paths"]
    for path, method in (
        ("/v1/me/mfa/totp", "post"),
        ("/v1/me/mfa/totp/activate", "post"),
        ("/v1/me/mfa", "delete"),
        ("/v1/auth/mfa", "post"),
        ("/v1/me/password", "post"),
    ):
        assert method in paths.get(path, {}), path
    enrol = paths["/v1/me/mfa/totp"]["post"]
    assert "requestBody" in enrol
    assert "422" in enrol["responses"]
    erase = paths["/v1/me"]["delete"]
    assert "requestBody" in erase
    assert "422" in erase["responses"]


def test_a_guesser_cannot_lock_a_doctor_out_of_a_known_browser(
    start_server: Callable[..., ServerProcess], unique: Unique
) -> None:
    """Finding 6 over HTTP: a doctor logs in (the answer carries a device token and sets an
    HttpOnly cookie); someone else sends 8 wrong passwords for the public CRM/UF: 5 are 401,
    then 429 with a short Retry-After. The doctor's browser (the cookie) and a JSON client
    sending `device_token` both log in; a client with neither waits (429)."""
    srv = start_server()
    with (
        httpx.Client(base_url=srv.url, timeout=30) as browser,
        httpx.Client(base_url=srv.url, timeout=30) as guesser,
    ):
        doctor = register_doctor(browser, unique())
        creds = {"crm": doctor["crm"], "uf": doctor["uf"]}
        first = browser.post("/v1/auth/doctors/login", json={**creds, "password": PASSWORD})
        assert first.status_code == 200, first.text
        token = first.json()["device_token"]
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"healthmed_device={token};")
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/v1/auth"):
            assert attribute.lower() in cookie.lower()
        statuses = []
        for _ in range(8):
            r = guesser.post("/v1/auth/doctors/login", json={**creds, "password": "guess guess"})
            statuses.append(r.status_code)
        assert statuses == [401] * 5 + [429] * 3
        assert 0 < int(r.headers["retry-after"]) <= 30
        again = browser.post("/v1/auth/doctors/login", json={**creds, "password": PASSWORD})
        assert again.status_code == 200, again.text
        body = {**creds, "password": PASSWORD, "device_token": token}
        assert guesser.post("/v1/auth/doctors/login", json=body).status_code == 200
        guesser.cookies.clear()
        plain = guesser.post("/v1/auth/doctors/login", json={**creds, "password": PASSWORD})
        assert plain.status_code == 429
        assert _schema_documents_the_device_token(srv.url)
        assert login_doctor(browser, doctor)["device_token"]


def _schema_documents_the_device_token(url: str) -> bool:
    """The OpenAPI document: the login bodies take `device_token`, the answer sets the
    `healthmed_device` cookie and the route reads it."""
    schema = httpx.get(f"{url}/schema/openapi.json", timeout=30).json()
    login = schema["paths"]["/v1/auth/doctors/login"]["post"]
    cookies = [p["name"] for p in login.get("parameters", []) if p["in"] == "cookie"]
    text = httpx.get(f"{url}/schema/openapi.json", timeout=30).text
    return cookies == ["healthmed_device"] and '"device_token"' in text and "Set-Cookie" in text
