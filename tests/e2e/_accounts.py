"""Helpers of the accounts and directory end-to-end tests: fresh identities and logins."""

from __future__ import annotations

from typing import Any

import httpx

from engine.accounts.validators import cpf_check_digits

PASSWORD = "correct horse battery"
SAO_PAULO = (-23.55, -46.63)


def cpf_for(n: int) -> str:
    base = f"{n % 10**9:09d}"
    return base + cpf_check_digits(base)


def punctuated(cpf: str) -> str:
    return f"{cpf[:3]}.{cpf[3:6]}.{cpf[6:9]}-{cpf[9:]}"


def doctor_body(n: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"Dr. Test {n}",
        "crm": f"{n % 10**8:08d}",
        "uf": "SP",
        "email": f"doctor{n}@example.com",
        "password": PASSWORD,
        "specialty": "cardiologia",
        "price_cents": 25_000,
        "location": {"lat": SAO_PAULO[0], "lon": SAO_PAULO[1]},
        "city": "São Paulo",
    }
    body.update(overrides)
    return body


def patient_body(n: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"Patient {n}",
        "email": f"patient{n}@example.com",
        "cpf": cpf_for(n),
        "password": PASSWORD,
    }
    body.update(overrides)
    return body


def register_doctor(http: httpx.Client, n: int, **overrides: Any) -> dict[str, Any]:
    r = http.post("/v1/doctors", json=doctor_body(n, **overrides))
    assert r.status_code == 201, r.text
    return dict(r.json())


def register_patient(http: httpx.Client, n: int, **overrides: Any) -> dict[str, Any]:
    r = http.post("/v1/patients", json=patient_body(n, **overrides))
    assert r.status_code == 201, r.text
    return dict(r.json())


def login_doctor(http: httpx.Client, profile: dict[str, Any]) -> dict[str, Any]:
    r = http.post(
        "/v1/auth/doctors/login",
        json={"crm": profile["crm"], "uf": profile["uf"], "password": PASSWORD},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def login_patient(http: httpx.Client, profile: dict[str, Any]) -> dict[str, Any]:
    r = http.post("/v1/auth/patients/login", json={"email": profile["email"], "password": PASSWORD})
    assert r.status_code == 200, r.text
    return dict(r.json())


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def patient_session(http: httpx.Client, n: int) -> dict[str, str]:
    """Register a fresh patient and return its authorization header."""
    return bearer(login_patient(http, register_patient(http, n)))
