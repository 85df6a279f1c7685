"""Access tokens: only an unexpired HS256 token of this issuer and audience, with every
required claim, is accepted."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from engine.accounts.tokens import AccessTokens
from engine.config import Settings
from engine.errors import Unauthenticated

SECRET = "s" * 64
SETTINGS = Settings(jwt_secret=SECRET, access_ttl_seconds=900)


@pytest.fixture
def tokens() -> AccessTokens:
    return AccessTokens(SETTINGS)


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "user-1",
        "role": "patient",
        "iss": SETTINGS.jwt_issuer,
        "aud": SETTINGS.jwt_audience,
        "iat": now,
        "exp": now + 60,
        "jti": "j1",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _code(tokens: AccessTokens, token: str) -> str:
    with pytest.raises(Unauthenticated) as info:
        tokens.verify(token)
    return info.value.code


def test_issued_token_verifies_to_its_principal(tokens: AccessTokens) -> None:
    """A token we issue verifies back to the same user, role, jti and lifetime."""
    token, principal = tokens.issue("user-1", "doctor")
    assert tokens.verify(token) == principal
    assert principal.expires_at - principal.issued_at == 900


def test_tampered_payload_is_rejected(tokens: AccessTokens) -> None:
    """Changing the role in the payload breaks the signature."""
    token, _ = tokens.issue("user-1", "patient")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "doctor"
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    assert _code(tokens, forged) == "invalid_token"


def test_tampered_signature_is_rejected(tokens: AccessTokens) -> None:
    """One changed character of the signature is enough to refuse the token."""
    token, _ = tokens.issue("user-1", "patient")
    last = "A" if token[-2] != "A" else "B"
    assert _code(tokens, token[:-2] + last + token[-1]) == "invalid_token"


def test_alg_none_is_rejected(tokens: AccessTokens) -> None:
    """An unsigned token (``alg: none``) is refused even with valid claims."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    assert _code(tokens, f"{header}.{payload}.") == "invalid_token"


def test_other_algorithm_with_the_same_secret_is_rejected(tokens: AccessTokens) -> None:
    """The algorithm is pinned: HS512 signed with our secret is still refused."""
    assert _code(tokens, jwt.encode(_claims(), SECRET, algorithm="HS512")) == "invalid_token"


def test_other_secret_is_rejected(tokens: AccessTokens) -> None:
    """A token signed with another key is refused."""
    assert _code(tokens, jwt.encode(_claims(), "x" * 64, algorithm="HS256")) == "invalid_token"


@pytest.mark.parametrize(("claim", "value"), [("aud", "someone-else"), ("iss", "evil")])
def test_wrong_audience_or_issuer_is_rejected(tokens: AccessTokens, claim: str, value: str) -> None:
    """A token for another audience or from another issuer is refused."""
    token = jwt.encode(_claims(**{claim: value}), SECRET, algorithm="HS256")
    assert _code(tokens, token) == "invalid_token"


def test_expired_token_is_rejected_with_its_own_code(tokens: AccessTokens) -> None:
    """A token past ``exp`` is ``token_expired``."""
    now = int(time.time())
    token = jwt.encode(_claims(iat=now - 120, exp=now - 60), SECRET, algorithm="HS256")
    assert _code(tokens, token) == "token_expired"


@pytest.mark.parametrize("claim", ["exp", "iat", "jti", "sub", "iss", "aud"])
def test_missing_required_claim_is_rejected(tokens: AccessTokens, claim: str) -> None:
    """Every required claim must be present."""
    claims = _claims()
    del claims[claim]
    assert _code(tokens, jwt.encode(claims, SECRET, algorithm="HS256")) == "invalid_token"


@pytest.mark.parametrize("role", ["admin", None])
def test_unknown_or_missing_role_is_rejected(tokens: AccessTokens, role: str | None) -> None:
    """Only ``doctor`` and ``patient`` are roles."""
    token = jwt.encode(_claims(role=role), SECRET, algorithm="HS256")
    assert _code(tokens, token) == "invalid_token"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x"])
def test_garbage_is_rejected(tokens: AccessTokens, garbage: str) -> None:
    """Strings that are not JWTs are ``invalid_token``, never an exception of another kind."""
    assert _code(tokens, garbage) == "invalid_token"


def test_a_cached_token_still_expires(tokens: AccessTokens) -> None:
    """A token verified (and cached) while valid is refused once its ``exp`` has passed."""
    now = int(time.time())
    token = jwt.encode(_claims(iat=now, exp=now + 1), SECRET, algorithm="HS256")
    assert tokens.verify(token).user_id == "user-1"
    time.sleep(max(0.0, now + 1.05 - time.time()))
    assert _code(tokens, token) == "token_expired"


def test_a_cached_token_does_not_vouch_for_its_variants(tokens: AccessTokens) -> None:
    """Once a token is cached, the same token with any byte changed is still verified afresh."""
    token = jwt.encode(_claims(), SECRET, algorithm="HS256")
    tokens.verify(token)
    head, payload, signature = token.split(".")
    forged_payload = _b64(json.dumps(_claims(sub="someone-else")).encode())
    assert _code(tokens, f"{head}.{forged_payload}.{signature}") == "invalid_token"
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert _code(tokens, f"{head}.{payload}.{flipped}") == "invalid_token"
