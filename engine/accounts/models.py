"""Wire shapes of accounts: request bodies (unknown fields rejected) and profiles.

Request structs only carry types; the engine validates values (``_validate``) so each failure
has its own ``code``. Profiles are built from the stored ``USER#<id>/PROFILE`` item.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from engine.accounts import validators as _rules
from engine.timeutil import DEFAULT_TIMEZONE, to_rfc3339
from engine.wire import doc


def _either_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


UF_PATTERN = r"^\s*(" + "|".join(_either_case(uf) for uf in sorted(_rules.UFS)) + r")\s*$"

Password = Annotated[
    str,
    doc(
        f"{_rules.PASSWORD_MIN} to {_rules.PASSWORD_MAX} characters (422 `weak_password`; "
        "too long: `invalid_password`)",
        min_length=_rules.PASSWORD_MIN,
        max_length=_rules.PASSWORD_MAX,
    ),
]
PriceCents = Annotated[
    int,
    doc(
        "centavos, 0 to 100000000 (422 `invalid_price`)", minimum=0, maximum=_rules.PRICE_MAX_CENTS
    ),
]
Name = Annotated[
    str,
    doc(
        f"at least one visible character; spaces collapsed, at most {_rules.NAME_MAX} "
        "characters (422 `invalid_name`)",
        pattern=r"\S",
        examples=["Dra. Ana Souza"],
    ),
]
CRM_PATTERN = r"^\s*[0-9]{4,8}\s*$"
Crm = Annotated[
    str, doc("4 to 8 digits (422 `invalid_crm`)", pattern=CRM_PATTERN, examples=["123456"])
]
Uf = Annotated[
    str,
    doc(
        "one of the 27 Brazilian state codes, case-insensitive (422 `invalid_uf`)",
        pattern=UF_PATTERN,
        examples=["SP"],
    ),
]
Email = Annotated[
    str,
    doc(
        "an address (name@domain.tld), at most 254 characters, stored lowercased; unique "
        "(409 `duplicate_account`; 422 `invalid_email`)",
        pattern=r"^\s*[^@\s]+@[^@\s.]+(\.[^@\s.]+)+\s*$",
        examples=["ana.souza@example.com"],
    ),
]
SPECIALTY_PATTERN = r"^\s*[A-Za-z0-9]+(-[A-Za-z0-9]+)*\s*$"
"""A specialty slug as given: trimmed, any case (stored lowercased), at most 64 characters."""
Specialty = Annotated[
    str,
    doc(
        "a slug: letters, digits and single hyphens, at most 64 characters, stored lowercased "
        "(422 `invalid_specialty`)",
        pattern=SPECIALTY_PATTERN,
        examples=["cardiologia"],
    ),
]
City = Annotated[
    str,
    doc(
        f"spaces collapsed, at most {_rules.CITY_MAX} characters (422 `invalid_city`)",
        examples=["São Paulo"],
    ),
]


class Location(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    lat: Annotated[
        float,
        doc(
            "latitude (422 `invalid_location`)",
            minimum=-_rules.GEO_LAT_MAX,
            maximum=_rules.GEO_LAT_MAX,
        ),
    ]
    lon: Annotated[float, doc("longitude (422 `invalid_location`)", minimum=-180, maximum=180)]


class Money(msgspec.Struct, frozen=True, kw_only=True):
    amount_cents: int
    currency: Literal["BRL"] = "BRL"


class Rating(msgspec.Struct, frozen=True, kw_only=True):
    average: float | None
    """Mean of the stars given, two decimals; ``null`` while the doctor has no rating."""
    count: int


class DoctorRegistration(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name
    crm: Crm
    uf: Uf
    email: Email
    password: Password
    specialty: Specialty
    price_cents: PriceCents
    location: Location
    city: City | None = None


class PatientRegistration(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name
    email: Email
    cpf: Annotated[
        str,
        doc(
            "11 digits, or punctuated as 000.000.000-00; check digits validated "
            "(422 `invalid_cpf`)",
            pattern=r"^\s*([0-9]{11}|[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2})\s*$",
            examples=["529.982.247-25"],
        ),
    ]
    password: Password


DeviceToken = Annotated[
    str,
    msgspec.Meta(
        description="The `device_token` an earlier successful login of this account returned "
        "(browsers send it as the `healthmed_device` cookie instead): attempts from a device "
        "that logged in before are limited apart from unknown clients, so failures elsewhere "
        "do not slow this device down. An invalid or expired one is ignored.",
    ),
]


class DoctorLogin(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    crm: str
    uf: str
    password: str
    device_token: DeviceToken | None = None


class PatientLogin(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At least one of ``email`` and ``cpf``; when both are given they must name one account."""

    password: str
    email: str | None = None
    cpf: str | None = None
    device_token: DeviceToken | None = None


class RefreshRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    refresh_token: str


class DoctorPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """PATCH /v1/me for doctors: only the fields sent change."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    price_cents: PriceCents | msgspec.UnsetType = msgspec.UNSET
    specialty: Specialty | msgspec.UnsetType = msgspec.UNSET
    location: Location | msgspec.UnsetType = msgspec.UNSET
    city: City | msgspec.UnsetType | None = msgspec.UNSET
    timezone: Annotated[
        str | msgspec.UnsetType,
        doc("an IANA time zone name (422 `invalid_timezone`)", examples=["America/Manaus"]),
    ] = msgspec.UNSET


VALUE_CHECKED: frozenset[type[msgspec.Struct]] = frozenset(
    {DoctorRegistration, PatientRegistration, DoctorPatch}
)
"""Bodies whose values go through ``validators.RULES`` (login bodies do not: a login reveals
nothing about the rules an account follows)."""


class TokenPair(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    """Seconds until the access token expires."""
    device_token: str | msgspec.UnsetType = msgspec.UNSET
    """After a login (not a refresh): this device's token, to send with the next logins of
    the account (``device_token`` in the body, or the ``healthmed_device`` cookie, which the
    response also sets). Valid 90 days from the last login."""


class DoctorProfile(msgspec.Struct, frozen=True, kw_only=True):
    """A doctor's public profile; ``email`` and ``created_at`` only in the doctor's own view."""

    id: str
    role: Literal["doctor"] = "doctor"
    name: str
    crm: str
    uf: str
    specialty: str
    price: Money
    location: Location
    city: str | None
    rating: Rating
    timezone: str = DEFAULT_TIMEZONE
    """IANA name: where the doctor's local times are (agendas carry it; rules default to it)."""
    email: str | msgspec.UnsetType = msgspec.UNSET
    created_at: str | msgspec.UnsetType = msgspec.UNSET


class PatientProfile(msgspec.Struct, frozen=True, kw_only=True):
    """A patient; ``email``, ``cpf`` and ``created_at`` only in the patient's own view."""

    id: str
    role: Literal["patient"] = "patient"
    name: str
    email: str | msgspec.UnsetType = msgspec.UNSET
    cpf: str | msgspec.UnsetType = msgspec.UNSET
    created_at: str | msgspec.UnsetType = msgspec.UNSET


Profile = DoctorProfile | PatientProfile


def rating_of(data: dict[str, Any]) -> Rating:
    count = int(data.get("rating_count", 0))
    total = int(data.get("rating_sum", 0))
    return Rating(average=round(total / count, 2) if count else None, count=count)


def doctor_profile(data: dict[str, Any], *, own: bool = False) -> DoctorProfile:
    return DoctorProfile(
        id=data["id"],
        name=data["name"],
        crm=data["crm"],
        uf=data["uf"],
        specialty=data["specialty"],
        price=Money(amount_cents=int(data["price_cents"])),
        location=Location(lat=float(data["lat"]), lon=float(data["lon"])),
        city=data.get("city"),
        rating=rating_of(data),
        timezone=str(data.get("timezone") or DEFAULT_TIMEZONE),
        email=data["email"] if own else msgspec.UNSET,
        created_at=to_rfc3339(int(data["created_at"])) if own else msgspec.UNSET,
    )


def patient_profile(data: dict[str, Any], *, own: bool = False) -> PatientProfile:
    return PatientProfile(
        id=data["id"],
        name=data["name"],
        email=data["email"] if own else msgspec.UNSET,
        cpf=data["cpf"] if own else msgspec.UNSET,
        created_at=to_rfc3339(int(data["created_at"])) if own else msgspec.UNSET,
    )


# --- two-factor authentication and account recovery -------------------------------------------
class MfaEnrolment(msgspec.Struct, frozen=True, kw_only=True):
    """A TOTP secret not yet active: shown once, confirmed with a code."""

    secret: str
    """Base32 (RFC 6238: SHA-1, 6 digits, 30 s)."""
    otpauth_uri: str
    """``otpauth://totp/...`` naming the issuer ``Health&Med``, for an authenticator's QR code."""


class CodeBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: str
    """A current TOTP code or, where the route says so, an unused recovery code."""


class PasswordBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A step-up: the account's current password again (``POST /v1/me/mfa/totp``)."""

    password: str


class RecoveryCodes(msgspec.Struct, frozen=True, kw_only=True):
    recovery_codes: list[str]
    """Ten single-use codes, shown once; only their hashes are kept."""


class MfaChallenge(msgspec.Struct, frozen=True, kw_only=True):
    """A correct password on an account with 2FA: no tokens yet, a code is needed."""

    mfa_required: Literal[True] = True
    mfa_token: str
    """Single use, for ``POST /v1/auth/mfa``."""
    expires_in: int
    """Seconds the ``mfa_token`` lasts (300)."""


class MfaLogin(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mfa_token: str
    code: str


class Erasure(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """DELETE /v1/me: the password again, and a code when 2FA is active."""

    password: str
    code: str | None = None


class PasswordChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    current_password: str
    new_password: Password


class PasswordReset(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{email}`` (a patient's or a doctor's) or ``{crm, uf}`` (a doctor's)."""

    email: Annotated[
        str | None,
        doc(
            "the account's e-mail (a patient's or a doctor's); or give crm and uf",
            examples=["ana.souza@example.com"],
        ),
    ] = None
    crm: Annotated[str | None, doc("a doctor's CRM, with uf", examples=["123456"])] = None
    uf: Annotated[str | None, doc("the CRM's state code", examples=["SP"])] = None


class ResetAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The one answer to a reset request, whether or not the account exists."""

    status: Annotated[
        Literal["accepted"], msgspec.Meta(description="always `accepted`", examples=["accepted"])
    ] = "accepted"
    detail: Annotated[
        str,
        msgspec.Meta(
            description="the same text for every request",
            examples=[
                "if the account exists, an e-mail with a code valid 30 minutes is on its way"
            ],
        ),
    ] = "if the account exists, an e-mail with a code valid 30 minutes is on its way"


class PasswordResetConfirm(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The code from the reset e-mail and the new password."""

    token: Annotated[
        str,
        doc(
            "the code from the e-mail's `Code:` line; single use, valid 30 minutes "
            "(422 `invalid_reset_token`)",
            examples=["q3Zp0H6mX2cVb8sR1tYwLkD4nF7gJ9aE"],
        ),
    ]
    password: Password
