"""Accounts and authentication (API.md): registration, login, refresh, logout, own profile,
LGPD export and erasure. Handlers only translate; the engine decides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import delete, get, patch, post
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from engine.accounts import (  # noqa: TC001  (Litestar reads handler annotations at runtime)
    DoctorLogin,
    DoctorPatch,
    DoctorProfile,
    DoctorRegistration,
    PatientLogin,
    PatientProfile,
    PatientRegistration,
    RefreshRequest,
    TokenPair,
)
from gateway.problems import problems

if TYPE_CHECKING:
    from engine.principal import Principal
    from engine.runtime import Engine

_PUBLIC: list[dict[str, list[str]]] = [{}]
"""OpenAPI: no bearer token needed."""


@post(
    "/v1/doctors",
    tags=["accounts"],
    summary="Register a doctor",
    status_code=HTTP_201_CREATED,
    security=_PUBLIC,
    responses=problems(409, 413, 422),
)
async def register_doctor(engine: Engine, data: DoctorRegistration) -> DoctorProfile:
    """`crm` 4-8 digits with a valid `uf`; (crm, uf) and e-mail unique (409
    `duplicate_account`); password at least 8 characters (422 `weak_password`)."""
    return await engine.accounts.register_doctor(data)


@post(
    "/v1/patients",
    tags=["accounts"],
    summary="Register a patient",
    status_code=HTTP_201_CREATED,
    security=_PUBLIC,
    responses=problems(409, 413, 422),
)
async def register_patient(engine: Engine, data: PatientRegistration) -> PatientProfile:
    """CPF with or without punctuation, check digits validated (422 `invalid_cpf`); e-mail
    and CPF unique (409 `duplicate_account`)."""
    return await engine.accounts.register_patient(data)


@post(
    "/v1/auth/doctors/login",
    tags=["auth"],
    summary="Doctor login (CRM + UF + password)",
    status_code=HTTP_200_OK,
    security=_PUBLIC,
    responses=problems(401, 422, 429),
)
async def login_doctor(engine: Engine, address: str, data: DoctorLogin) -> TokenPair:
    """Wrong credentials: 401 `invalid_credentials`, the same body whether the account exists
    or not. Repeated failures for one account or address: 429 `too_many_attempts`."""
    return await engine.accounts.login_doctor(data, address)


@post(
    "/v1/auth/patients/login",
    tags=["auth"],
    summary="Patient login (e-mail and/or CPF + password)",
    status_code=HTTP_200_OK,
    security=_PUBLIC,
    responses=problems(401, 422, 429),
)
async def login_patient(engine: Engine, address: str, data: PatientLogin) -> TokenPair:
    """At least one of e-mail and CPF (neither: 422); both given must name the same account
    (else 401). Failures as for doctors."""
    return await engine.accounts.login_patient(data, address)


@post(
    "/v1/auth/refresh",
    tags=["auth"],
    summary="Rotate a refresh token",
    status_code=HTTP_200_OK,
    security=_PUBLIC,
    responses=problems(401, 422),
)
async def refresh(engine: Engine, data: RefreshRequest) -> TokenPair:
    """Returns a new pair; the token presented is spent. Presenting a spent token again: 401
    `refresh_token_reused` and every token of that login is revoked."""
    return await engine.accounts.refresh(data.refresh_token)


@post(
    "/v1/auth/logout",
    tags=["auth"],
    summary="Log out",
    status_code=HTTP_204_NO_CONTENT,
    responses=problems(401, 422),
)
async def logout(engine: Engine, principal: Principal, data: RefreshRequest) -> None:
    """Revokes the login's refresh token family (when it is the caller's) and the access token
    used for this call. Idempotent."""
    await engine.accounts.logout(principal, data.refresh_token)


@get("/v1/me", tags=["accounts"], summary="Own profile", responses=problems(401))
async def me(engine: Engine, principal: Principal) -> DoctorProfile | PatientProfile:
    """The caller's profile, including e-mail (and CPF for patients)."""
    return await engine.accounts.get_profile(principal)


@patch(
    "/v1/me",
    tags=["accounts"],
    summary="Edit own doctor profile",
    responses=problems(401, 403, 413, 422),
)
async def update_me(engine: Engine, doctor: Principal, data: DoctorPatch) -> DoctorProfile:
    """Doctors only (patients: 403): `price_cents`, `specialty`, `location`, `city`, `name`;
    fields not sent keep their value. A new specialty moves the doctor in the directory."""
    return await engine.accounts.update_doctor(doctor, data)


@delete(
    "/v1/me",
    tags=["accounts"],
    summary="Erase own account (LGPD)",
    status_code=HTTP_204_NO_CONTENT,
    responses=problems(401, 503),
)
async def erase_me(engine: Engine, principal: Principal) -> None:
    """Revokes every token, cancels future appointments, deletes records and shares,
    anonymises personal data. The account can no longer log in."""
    await engine.erase_user(principal)


@get("/v1/me/export", tags=["accounts"], summary="Export own data (LGPD)", responses=problems(401))
async def export_me(engine: Engine, principal: Principal) -> dict[str, Any]:
    """Every personal datum held: `profile`, `appointments` and, for patients, `records`,
    `shares` and `access_log`."""
    return await engine.export_user(principal)


route_handlers = [
    register_doctor,
    register_patient,
    login_doctor,
    login_patient,
    refresh,
    logout,
    me,
    update_me,
    erase_me,
    export_me,
]
