"""schemathesis hooks of the contract tier (loaded through ``SCHEMATHESIS_HOOKS``).

Authentication by role: a doctor-only route gets a doctor's token, a patient-only route a
patient's, any other route alternates between the two, so both roles cross every route. The
role of a route is read from its handler (it asks for the ``doctor`` or ``patient``
dependency), so a route added later is covered without touching this file. Tokens are real:
a fresh account is registered and logged in on the server under test, and again whenever a
token stops working (the fuzzer logs out and erases accounts: ``retry_on`` 401).
"""

from __future__ import annotations

import inspect
import itertools
import os
import re
from typing import Any

import httpx
import schemathesis

from engine.accounts.validators import cpf_check_digits
from gateway.routes import ROUTE_HANDLERS

PASSWORD = "contract tier password"
_BASE = os.environ["HEALTHMED_CONTRACT_URL"]
_numbers = itertools.count(int(os.environ.get("HEALTHMED_CONTRACT_SEED", "12")) * 10**6 + 10**7)


def _template(path: str) -> str:
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", r"{\1}", path)


def _roles() -> dict[tuple[str, str], str]:
    roles: dict[tuple[str, str], str] = {}
    for handler in ROUTE_HANDLERS:
        params = inspect.signature(handler.fn).parameters
        role = "doctor" if "doctor" in params else "patient" if "patient" in params else "any"
        for path in handler.paths:
            for method in handler.http_methods:
                roles[(method.upper(), _template(path))] = role
    return roles


ROLES = _roles()


def _role(case: Any, ctx: Any) -> str:
    role = ROLES.get((ctx.operation.method.upper(), ctx.operation.path), "any")
    if role == "any":  # the same case always gets the same role (key and token agree)
        role = "doctor" if (id(case) >> 4) % 2 else "patient"
    return role


def new_token(role: str) -> str:
    """Register a fresh account of ``role`` and log it in."""
    n = next(_numbers)
    with httpx.Client(base_url=_BASE, timeout=30) as http:
        if role == "doctor":
            body = {
                "name": f"Dra. Contract {n}",
                "crm": f"{n % 10**8:08d}",
                "uf": "SP",
                "email": f"contract.doctor{n}@example.com",
                "password": PASSWORD,
                "specialty": "cardiologia",
                "price_cents": 25_000,
                "location": {"lat": -23.55, "lon": -46.63},
            }
            http.post("/v1/doctors", json=body).raise_for_status()
            login = {"crm": body["crm"], "uf": "SP", "password": PASSWORD}
            r = http.post("/v1/auth/doctors/login", json=login)
        else:
            digits = f"{n % 10**9:09d}"
            body = {
                "name": f"Contract Patient {n}",
                "email": f"contract.patient{n}@example.com",
                "cpf": digits + cpf_check_digits(digits),
                "password": PASSWORD,
            }
            http.post("/v1/patients", json=body).raise_for_status()
            login = {"email": body["email"], "password": PASSWORD}
            r = http.post("/v1/auth/patients/login", json=login)
        r.raise_for_status()
        return str(r.json()["access_token"])


@schemathesis.auth(cache_by_key=_role, refresh_interval=600)
class RoleAuth:
    def get(self, case: Any, ctx: Any) -> str:
        return new_token(_role(case, ctx))

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
