"""Accounts and authentication (docs/API.md): registration, login (with TOTP 2FA), refresh,
logout, own profile, password change, LGPD export and erasure. Handlers only translate; the
engine decides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec
from litestar import Response, delete, get, patch, post
from litestar.datastructures import Cookie
from litestar.params import CookieParameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
)

from engine.accounts import (
    CodeBody,
    DoctorLogin,
    DoctorPatch,
    DoctorProfile,
    DoctorRegistration,
    Erasure,
    MfaChallenge,
    MfaEnrolment,
    MfaLogin,
    PasswordBody,
    PasswordChange,
    PasswordReset,
    PasswordResetConfirm,
    PatientLogin,
    PatientProfile,
    PatientRegistration,
    RecoveryCodes,
    RefreshRequest,
    ResetAccepted,
    TokenPair,
)
from engine.accounts._devices import COOKIE, LIFETIME_SECONDS
from engine.errors import EngineError, Invalid
from gateway.problems import problems
from gateway.telemetry import event

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from engine.principal import Principal, Role
    from engine.runtime import Engine

_PUBLIC: list[dict[str, list[str]]] = [{}]
"""OpenAPI: no bearer token needed."""

DeviceCookie = Annotated[
    str | None,
    CookieParameter(
        name=COOKIE,
        required=False,
        description="The device token an earlier login set (browsers); `device_token` in the "
        "body, when given, is used instead.",
    ),
]
_DEVICE_COOKIE = [
    Cookie(
        key=COOKIE,
        description="This device's token (the body's `device_token`), sent back by the "
        "browser on its next logins: failures from unknown clients do not slow it down. "
        "HttpOnly, SameSite=Strict, Path=/v1/auth, 90 days; Secure in production.",
        documentation_only=True,
    )
]


def _with_device_cookie(
    engine: Engine, answer: TokenPair | MfaChallenge
) -> Response[TokenPair | MfaChallenge]:
    """The login's answer, setting the device cookie when it carries a device token."""
    cookies = []
    if isinstance(answer, TokenPair) and isinstance(answer.device_token, str):
        cookies.append(
            Cookie(
                key=COOKIE,
                value=answer.device_token,
                max_age=LIFETIME_SECONDS,
                path="/v1/auth",
                httponly=True,
                samesite="strict",
                secure=engine.settings.production,
            )
        )
    return Response(answer, cookies=cookies)


_Login = TypeVar("_Login", DoctorLogin, PatientLogin)


def _device_from_cookie(body: _Login, cookie: str | None) -> _Login:
    if body.device_token is None and cookie:
        return msgspec.structs.replace(body, device_token=cookie)
    return body


async def _login(
    engine: Engine,
    role: Role,
    login: Callable[[_Login, str], Awaitable[TokenPair | MfaChallenge]],
    data: _Login,
    cookie: str | None,
    address: str,
) -> Response[TokenPair | MfaChallenge]:
    """The password step of either role's login: the body's device token, else the cookie's;
    the device cookie set on the answer; a refusal logged as ``login.failed`` (the role and
    the code, never the identifier) before the problem handler answers it."""
    try:
        answer = await login(_device_from_cookie(data, cookie), address)
    except EngineError as exc:
        event("login.failed", role=role, code=exc.code)
        raise
    return _with_device_cookie(engine, answer)


@post(
    "/v1/doctors",
    tags=["accounts"],
    summary="Register a doctor",
    status_code=HTTP_201_CREATED,
    security=_PUBLIC,
    responses=problems(409, 413, 422, 429),
)
async def register_doctor(engine: Engine, address: str, data: DoctorRegistration) -> DoctorProfile:
    """`crm` 4-8 digits with a valid `uf`; (crm, uf) and e-mail unique (409
    `duplicate_account`); password at least 8 characters (422 `weak_password`). Registrations
    from one address are limited (generously: 429 `too_many_requests`)."""
    await engine.accounts.check_address_rate(address)
    return await engine.accounts.register_doctor(data)


@post(
    "/v1/patients",
    tags=["accounts"],
    summary="Register a patient",
    status_code=HTTP_201_CREATED,
    security=_PUBLIC,
    responses=problems(409, 413, 422, 429),
)
async def register_patient(
    engine: Engine, address: str, data: PatientRegistration
) -> PatientProfile:
    """CPF with or without punctuation, check digits validated (422 `invalid_cpf`); e-mail
    and CPF unique (409 `duplicate_account`). Registrations from one address are limited
    (generously: 429 `too_many_requests`)."""
    await engine.accounts.check_address_rate(address)
    return await engine.accounts.register_patient(data)


@post(
    "/v1/auth/doctors/login",
    tags=["auth"],
    summary="Doctor login (CRM + UF + password)",
    status_code=HTTP_200_OK,
    security=_PUBLIC,
    responses=problems(401, 422, 429),
    response_cookies=_DEVICE_COOKIE,
)
async def login_doctor(
    engine: Engine, address: str, data: DoctorLogin, device_cookie: DeviceCookie = None
) -> Response[TokenPair | MfaChallenge]:
    """Wrong credentials: 401 `invalid_credentials`, the same body whether the account exists
    or not. Repeated failures for one account or address: 429 `too_many_attempts` with
    `Retry-After`, a delay that grows with each attempt let through (not a lock). Attempts
    with the `device_token` of an earlier login of the account (or its cookie) are limited
    apart from unknown clients: someone guessing at a public CRM cannot lock its doctor out
    of a device used before. A login answers a (renewed) `device_token` and sets the cookie.
    With 2FA active, a right password answers `{mfa_required: true, mfa_token, expires_in}`
    instead of tokens: finish with `POST /v1/auth/mfa`."""
    return await _login(
        engine, "doctor", engine.accounts.login_doctor, data, device_cookie, address
    )


@post(
    "/v1/auth/patients/login",
    tags=["auth"],
    summary="Patient login (e-mail and/or CPF + password)",
    status_code=HTTP_200_OK,
    security=_PUBLIC,
    responses=problems(401, 422, 429),
    response_cookies=_DEVICE_COOKIE,
)
async def login_patient(
    engine: Engine, address: str, data: PatientLogin, device_cookie: DeviceCookie = None
) -> Response[TokenPair | MfaChallenge]:
    """At least one of e-mail and CPF (neither: 422); both given must name the same account
    (else 401). Failures, device tokens and 2FA as for doctors."""
    return await _login(
        engine, "patient", engine.accounts.login_patient, data, device_cookie, address
    )


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
    """Doctors only (patients: 403): `price_cents`, `specialty`, `location`, `city`, `name`,
    `timezone` (an IANA name, default `America/Sao_Paulo`: agendas carry it and weekly rules
    without a `timezone` use it); fields not sent keep their value. A new specialty moves the
    doctor in the directory."""
    return await engine.accounts.update_doctor(doctor, data)


@delete(
    "/v1/me",
    tags=["accounts"],
    summary="Erase own account (LGPD)",
    status_code=HTTP_204_NO_CONTENT,
    responses=problems(401, 413, 422, 429, 503),
)
async def erase_me(engine: Engine, principal: Principal, address: str, data: Erasure) -> None:
    """`{password, code?}`: the password again, and a current TOTP or recovery code when 2FA
    is active (wrong or missing: 422 `invalid_password` / `invalid_code`). Revokes every
    token, cancels future appointments, deletes records and shares, anonymises personal
    data. The account can no longer log in."""
    await engine.accounts.security.step_up(principal, data.password, data.code, address)
    await engine.erase_user(principal)


@get("/v1/me/export", tags=["accounts"], summary="Export own data (LGPD)", responses=problems(401))
async def export_me(engine: Engine, principal: Principal) -> dict[str, Any]:
    """Every personal datum held: `profile`, `appointments` and, for patients, `records`,
    `shares` and `access_log`."""
    return await engine.export_user(principal)


@post(
    "/v1/auth/mfa",
    tags=["auth"],
    summary="Second login step: a TOTP or recovery code",
    status_code=HTTP_200_OK,
    security=_PUBLIC,
    responses=problems(401, 413, 422, 429),
    response_cookies=_DEVICE_COOKIE,
)
async def login_mfa(engine: Engine, address: str, data: MfaLogin) -> Response[TokenPair]:
    """`{mfa_token, code}` after a login answered `mfa_required` → the token pair and the
    device token (as for a login). A wrong code, a TOTP code already used, a spent recovery
    code, a spent or expired `mfa_token`: 401. Wrong codes count toward the login limits of
    the password step's device or unknown clients (429 `too_many_attempts`)."""
    pair = await engine.accounts.security.complete_mfa(data, address)
    response: Response[Any] = _with_device_cookie(engine, pair)
    return response


@post(
    "/v1/me/mfa/totp",
    tags=["accounts"],
    summary="Start TOTP enrolment",
    status_code=HTTP_201_CREATED,
    responses=problems(401, 409, 413, 422, 429),
)
async def enrol_totp(
    engine: Engine, principal: Principal, address: str, data: PasswordBody
) -> MfaEnrolment:
    """`{password}`: the account's password again (a step-up: a stolen access token alone
    cannot enrol its thief's authenticator; wrong or missing: 422 `invalid_password`, counted
    toward the login limits, 429 `too_many_attempts`) → a new TOTP secret (RFC 6238: SHA-1,
    6 digits, 30 s) and its `otpauth_uri` (issuer `Health&Med`); not active until confirmed;
    a second call replaces an unconfirmed secret. 2FA already active: 409 `mfa_active`."""
    return await engine.accounts.security.enrol_totp(principal, data.password, address)


@post(
    "/v1/me/mfa/totp/activate",
    tags=["accounts"],
    summary="Confirm TOTP enrolment with a code",
    status_code=HTTP_200_OK,
    responses=problems(401, 413, 422, 429),
)
async def activate_totp(
    engine: Engine, principal: Principal, address: str, data: CodeBody
) -> RecoveryCodes:
    """`{code}` from the authenticator → 2FA is on, and the ten single-use recovery codes
    (shown once; only hashes are kept). Wrong code: 422 `invalid_code`."""
    codes = await engine.accounts.security.activate_totp(principal, data.code, address)
    return RecoveryCodes(recovery_codes=codes)


@delete(
    "/v1/me/mfa",
    tags=["accounts"],
    summary="Turn 2FA off",
    status_code=HTTP_204_NO_CONTENT,
    responses=problems(401, 413, 422, 429),
)
async def disable_mfa(engine: Engine, principal: Principal, address: str, data: CodeBody) -> None:
    """`{code}`: a current TOTP code or an unused recovery code (wrong: 422 `invalid_code`)."""
    await engine.accounts.security.disable_mfa(principal, data.code, address)


@post(
    "/v1/me/password",
    tags=["accounts"],
    summary="Change own password",
    status_code=HTTP_204_NO_CONTENT,
    responses=problems(401, 413, 422, 429),
)
async def change_password(
    engine: Engine, principal: Principal, address: str, data: PasswordChange
) -> None:
    """`{current_password, new_password}`; wrong current password: 422 `invalid_password`;
    new one under 8 characters: 422 `weak_password`. Every other session of the account
    (refresh tokens and their access tokens) is revoked; this one goes on."""
    await engine.accounts.security.change_password(principal, data, address)


@post(
    "/v1/auth/password-reset",
    tags=["auth"],
    summary="Ask for a password reset e-mail",
    status_code=HTTP_202_ACCEPTED,
    security=_PUBLIC,
    responses=problems(413, 422, 429),
)
async def request_password_reset(
    engine: Engine, address: str, data: PasswordReset
) -> ResetAccepted:
    """`{email}` (a patient's or a doctor's) or `{crm, uf}` → 202 with the same body, at the
    same speed, whether or not the account exists. When it exists, an e-mail (`password.reset`)
    carries a single-use code valid 30 minutes on a line `Code: <code>`. Neither identifier:
    422 `identifier_required`; many requests from one address: 429."""
    if not data.email and not (data.crm and data.uf):
        raise Invalid(
            "email, or crm and uf, is required",
            code="identifier_required",
            errors=[{"key": "email", "message": "email, or crm and uf, is required"}],
        )
    await engine.accounts.check_address_rate(address)
    engine.accounts.resets.request(data)
    return ResetAccepted()


@post(
    "/v1/auth/password-reset/confirm",
    tags=["auth"],
    summary="Set a new password with the e-mailed code",
    status_code=HTTP_204_NO_CONTENT,
    security=_PUBLIC,
    responses=problems(413, 422),
)
async def confirm_password_reset(engine: Engine, data: PasswordResetConfirm) -> None:
    """`{token, password}`: the code from the e-mail and a new password → 204; every session
    and refresh token of the account is revoked. A wrong, spent or expired code: 422
    `invalid_reset_token`; a password under 8 characters: 422 `weak_password`."""
    await engine.accounts.resets.confirm(data)


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
    login_mfa,
    enrol_totp,
    activate_totp,
    disable_mfa,
    change_password,
    request_password_reset,
    confirm_password_reset,
]
