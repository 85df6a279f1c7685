"""Field validators of account data. Each returns the normalised value or raises ``Invalid``.

Messages never echo the value back (a CPF or a password must not end up in a log or a
response body).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from engine.errors import Invalid, error_entries
from engine.timeutil import zone

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

UFS = frozenset(
    "AC AL AP AM BA CE DF ES GO MA MT MS MG PA PB PR PE PI RJ RN RS RO RR SC SP SE TO".split()  # noqa: SIM905
)
"""The 27 Brazilian federative units (26 states and the Federal District)."""

PASSWORD_MIN = 8
PASSWORD_MAX = 256
NAME_MAX = 200
CITY_MAX = 120
PRICE_MAX_CENTS = 100_000_000
"""One million reais: anything above is a typo, not a consultation price."""

GEO_LAT_MAX = 85.05112878
"""Redis GEO indexes latitudes within ±85.05112878 (Web Mercator); the whole of Brazil fits."""

_CRM = re.compile(r"[0-9]{4,8}")
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_CPF_PUNCTUATED = re.compile(r"[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}")
_CPF_DIGITS = re.compile(r"[0-9]{11}")


def _field_error(detail: str, code: str, field: str) -> Invalid:
    return Invalid(detail, code=code, errors=[{"key": field, "message": detail, "code": code}])


def cpf_check_digits(first_nine: str) -> str:
    """The two check digits of a CPF whose first nine digits are given (mod-11 rule)."""
    digits = [int(c) for c in first_nine]
    for weight_start in (10, 11):
        total = sum(d * w for d, w in zip(digits, range(weight_start, 1, -1), strict=False))
        rest = total % 11
        digits.append(0 if rest < 2 else 11 - rest)
    return f"{digits[-2]}{digits[-1]}"


def cpf(value: str) -> str:
    """A CPF as 11 digits. Accepts ``12345678909`` or ``123.456.789-09``; checks both check
    digits and rejects the all-same-digit numbers that pass the arithmetic."""
    raw = value.strip()
    if _CPF_PUNCTUATED.fullmatch(raw):
        raw = raw.replace(".", "").replace("-", "")
    if not _CPF_DIGITS.fullmatch(raw):
        raise _field_error("cpf must have 11 digits", "invalid_cpf", "cpf")
    if len(set(raw)) == 1 or cpf_check_digits(raw[:9]) != raw[9:]:
        raise _field_error("cpf check digits do not match", "invalid_cpf", "cpf")
    return raw


def crm(value: str) -> str:
    raw = value.strip()
    if not _CRM.fullmatch(raw):
        raise _field_error("crm must be 4 to 8 digits", "invalid_crm", "crm")
    return raw


def uf(value: str) -> str:
    raw = value.strip()
    if not raw.isascii() or (raw := raw.upper()) not in UFS:  # "\u017fp".upper() is "SP"
        raise _field_error("uf must be a Brazilian state code such as SP", "invalid_uf", "uf")
    return raw


def email(value: str) -> str:
    raw = value.strip().lower()
    if len(raw) > 254 or not _EMAIL.fullmatch(raw):
        raise _field_error("email is not a valid address", "invalid_email", "email")
    return raw


def password(value: str) -> str:
    if len(value) < PASSWORD_MIN:
        raise _field_error(
            f"password must have at least {PASSWORD_MIN} characters", "weak_password", "password"
        )
    if len(value) > PASSWORD_MAX:
        raise _field_error(
            f"password must have at most {PASSWORD_MAX} characters", "invalid_password", "password"
        )
    return value


def specialty(value: str) -> str:
    raw = value.strip()
    # ASCII before lowercasing: the Kelvin sign "\u212a" lowercases to "k"
    if len(raw) > 64 or not raw.isascii() or not _SLUG.fullmatch(raw := raw.lower()):
        raise _field_error(
            "specialty must be a slug: lowercase letters, digits and hyphens",
            "invalid_specialty",
            "specialty",
        )
    return raw


def name(value: str, field: str = "name") -> str:
    raw = " ".join(value.split())
    if not raw or len(raw) > NAME_MAX:
        raise _field_error(f"{field} must have 1 to {NAME_MAX} characters", "invalid_name", field)
    return raw


def city(value: str | None) -> str | None:
    if value is None:
        return None
    raw = " ".join(value.split())
    if len(raw) > CITY_MAX:
        raise _field_error(f"city must have at most {CITY_MAX} characters", "invalid_city", "city")
    return raw or None


def timezone(value: str) -> str:
    """An IANA time zone name, as given (``Invalid`` ``invalid_timezone`` otherwise)."""
    try:
        zone(value)
    except Invalid:
        raise _field_error(
            "timezone must be an IANA name such as America/Sao_Paulo",
            "invalid_timezone",
            "timezone",
        ) from None
    return value


def latitude(value: float, field: str = "lat") -> float:
    if not math.isfinite(value) or not -GEO_LAT_MAX <= value <= GEO_LAT_MAX:
        raise _field_error(
            f"{field} must be a latitude within ±{GEO_LAT_MAX}", "invalid_location", field
        )
    return float(value)


def longitude(value: float, field: str = "lon") -> float:
    if not math.isfinite(value) or not -180.0 <= value <= 180.0:
        raise _field_error(f"{field} must be a longitude within ±180", "invalid_location", field)
    return float(value)


def price_cents(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= PRICE_MAX_CENTS:
        raise _field_error(
            f"price_cents must be an integer from 0 to {PRICE_MAX_CENTS}",
            "invalid_price",
            "price_cents",
        )
    return value


RULES: dict[str, Callable[[Any], Any]] = {
    "name": name,
    "crm": crm,
    "uf": uf,
    "email": email,
    "password": password,
    "cpf": cpf,
    "specialty": specialty,
    "price_cents": price_cents,
    "city": city,
    "timezone": timezone,
    "location.lat": lambda value: latitude(value, "location.lat"),
    "location.lon": lambda value: longitude(value, "location.lon"),
}
"""The rule of each account field, by its key in a request body."""


def check_all(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every value (by its key in ``RULES``) through its rule: the normalised values, or one
    ``Invalid`` listing every invalid field, whose ``code`` is the first one's."""
    out: dict[str, Any] = {}
    first: Invalid | None = None
    errors: list[dict[str, Any]] = []
    for key, value in values.items():
        try:
            out[key] = RULES[key](value)
        except Invalid as exc:
            first = first or exc
            errors += error_entries(exc)
    if first is not None:
        raise Invalid(first.detail, code=first.code, errors=errors)
    return out
