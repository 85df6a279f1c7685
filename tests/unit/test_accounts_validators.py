"""Validators of account fields: each accepts the normal forms and rejects with its own code."""

from __future__ import annotations

import pytest

from engine.accounts import validators as v
from engine.errors import Invalid

VALID_CPFS = ["52998224725", "11144477735", "39053344705"]


def _code(fn, *args):
    with pytest.raises(Invalid) as info:
        fn(*args)
    return info.value.code


@pytest.mark.parametrize("cpf", VALID_CPFS)
def test_cpf_digits_only_is_accepted(cpf: str) -> None:
    """A valid CPF written as 11 digits is returned unchanged."""
    assert v.cpf(cpf) == cpf


@pytest.mark.parametrize("cpf", VALID_CPFS)
def test_cpf_with_punctuation_is_stored_as_11_digits(cpf: str) -> None:
    """``123.456.789-09`` is accepted and normalised to its 11 digits."""
    punctuated = f"{cpf[:3]}.{cpf[3:6]}.{cpf[6:9]}-{cpf[9:]}"
    assert v.cpf(punctuated) == cpf


@pytest.mark.parametrize("cpf", ["52998224724", "52998224715", "11144477736"])
def test_cpf_with_wrong_check_digits_is_rejected(cpf: str) -> None:
    """A CPF whose check digits do not match is ``invalid_cpf``."""
    assert _code(v.cpf, cpf) == "invalid_cpf"


@pytest.mark.parametrize("digit", "0123456789")
def test_cpf_of_one_repeated_digit_is_rejected(digit: str) -> None:
    """``111.111.111-11`` passes the arithmetic but is not a real CPF."""
    assert _code(v.cpf, digit * 11) == "invalid_cpf"


@pytest.mark.parametrize(
    "cpf", ["", "5299822472", "529982247250", "529.982.24725", "abcdefghijk", "529 982 247 25"]
)
def test_cpf_of_wrong_shape_is_rejected(cpf: str) -> None:
    """Wrong length, stray characters or half punctuation are ``invalid_cpf``."""
    assert _code(v.cpf, cpf) == "invalid_cpf"


def test_cpf_check_digits_match_a_known_example() -> None:
    """The mod-11 rule gives 25 for 529.982.247."""
    assert v.cpf_check_digits("529982247") == "25"


@pytest.mark.parametrize("crm", ["1234", "12345678", " 98765 "])
def test_crm_of_4_to_8_digits_is_accepted(crm: str) -> None:
    """CRM numbers are 4 to 8 digits (surrounding blanks ignored)."""
    assert v.crm(crm) == crm.strip()


@pytest.mark.parametrize("crm", ["123", "123456789", "12a45", "", "-1234"])
def test_crm_outside_4_to_8_digits_is_rejected(crm: str) -> None:
    """Anything else is ``invalid_crm``."""
    assert _code(v.crm, crm) == "invalid_crm"


def test_all_27_ufs_are_accepted_in_any_case() -> None:
    """Each Brazilian state code is accepted, lowercase too, and returned uppercase."""
    assert len(v.UFS) == 27
    for uf in v.UFS:
        assert v.uf(uf.lower()) == uf


@pytest.mark.parametrize("uf", ["XX", "S", "SPP", "", "EX"])
def test_unknown_uf_is_rejected(uf: str) -> None:
    """A code that is not a Brazilian state is ``invalid_uf``."""
    assert _code(v.uf, uf) == "invalid_uf"


def test_email_is_lowercased_and_trimmed() -> None:
    """E-mails compare case-insensitively: they are stored lowercased."""
    assert v.email("  Ana.Souza@Example.COM ") == "ana.souza@example.com"


@pytest.mark.parametrize(
    "email", ["", "ana", "ana@", "@example.com", "ana@example", "a b@example.com", "a@@b.com"]
)
def test_malformed_email_is_rejected(email: str) -> None:
    """Addresses without a local part, a dotted domain, or with blanks are ``invalid_email``."""
    assert _code(v.email, email) == "invalid_email"


def test_password_of_8_characters_is_accepted() -> None:
    """Eight characters is the minimum length."""
    assert v.password("12345678") == "12345678"


def test_short_password_is_weak() -> None:
    """Seven characters is ``weak_password``."""
    assert _code(v.password, "1234567") == "weak_password"


def test_huge_password_is_rejected() -> None:
    """A password above the maximum is refused before it reaches the hasher."""
    assert _code(v.password, "x" * (v.PASSWORD_MAX + 1)) == "invalid_password"


@pytest.mark.parametrize(
    ("raw", "slug"),
    [
        ("Cardiologia", "cardiologia"),
        ("clinica-geral", "clinica-geral"),
        ("ortopedia2", "ortopedia2"),
    ],
)
def test_specialty_slug_is_lowercased(raw: str, slug: str) -> None:
    """Specialties are slugs, stored lowercased."""
    assert v.specialty(raw) == slug


@pytest.mark.parametrize(
    "raw", ["", "clínica", "clinica geral", "-cardio", "cardio-", "a--b", "a_b"]
)
def test_specialty_that_is_not_a_slug_is_rejected(raw: str) -> None:
    """Accents, blanks, underscores and stray hyphens are ``invalid_specialty``."""
    assert _code(v.specialty, raw) == "invalid_specialty"


@pytest.mark.parametrize("lat", [-85.06, 85.06, 91.0, float("nan"), float("inf")])
def test_latitude_out_of_range_is_rejected(lat: float) -> None:
    """Latitudes beyond what Redis GEO indexes, and non-finite ones, are refused."""
    assert _code(v.latitude, lat) == "invalid_location"


@pytest.mark.parametrize("lon", [-180.01, 180.01, float("nan")])
def test_longitude_out_of_range_is_rejected(lon: float) -> None:
    """Longitudes outside ±180 are refused."""
    assert _code(v.longitude, lon) == "invalid_location"


@pytest.mark.parametrize("price", [-1, v.PRICE_MAX_CENTS + 1, True])
def test_price_outside_range_is_rejected(price: int) -> None:
    """Negative, absurd or boolean prices are ``invalid_price``."""
    assert _code(v.price_cents, price) == "invalid_price"


def test_name_blanks_are_collapsed_and_empty_name_rejected() -> None:
    """Names are trimmed; a blank name is ``invalid_name``."""
    assert v.name("  Ana   Souza ") == "Ana Souza"
    assert _code(v.name, "   ") == "invalid_name"


def test_error_does_not_echo_the_value() -> None:
    """A rejected CPF is not repeated in the error (no personal data in logs or bodies)."""
    with pytest.raises(Invalid) as info:
        v.cpf("52998224724")
    assert "52998224724" not in str(info.value.detail)
    assert "52998224724" not in repr(info.value.fields)
