"""Access tokens: short-lived HS256 JWTs with ``sub``, ``role``, ``iss``, ``aud``, ``iat``,
``exp`` and ``jti``, and ``sid`` (the login, i.e. refresh family, it belongs to).

Verification pins the algorithm (``alg: none`` or any other algorithm is rejected), checks
``iss``, ``aud`` and ``exp``, and requires ``exp``, ``iat``, ``jti``, ``sub`` and ``role``.
Revocation before expiry (logout, erasure) is a Redis denylist checked by the caller
(:meth:`engine.runtime.Engine.authenticate`), on every request, cached or not.

Verified tokens are remembered per process until they expire (a client sends the same token
for its whole life), so the hot path skips the signature and claim checks. The cache is keyed
by the whole token, signature included: a token that differs in any byte is verified afresh.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import jwt

from engine.errors import Unauthenticated
from engine.principal import Principal

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.principal import Role

ALGORITHM = "HS256"
CACHE_SIZE = 100_000
"""Verified tokens remembered per process (~0.5 KiB each); the oldest go first when full."""
_REQUIRED = ["exp", "iat", "jti", "sub", "iss", "aud"]


class AccessTokens:
    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.ttl = settings.access_ttl_seconds
        self._verified: dict[str, Principal] = {}

    def issue(
        self, user_id: str, role: Role, *, session: str = "", now: float | None = None
    ) -> tuple[str, Principal]:
        """A token for ``user_id``; ``session`` names its login (refresh family) as ``sid``."""
        iat = int(time.time() if now is None else now)
        principal = Principal(
            user_id=user_id,
            role=role,
            jti=uuid.uuid4().hex,
            issued_at=iat,
            expires_at=iat + self.ttl,
            session=session,
        )
        claims: dict[str, object] = {
            "sub": user_id,
            "role": role,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": iat,
            "exp": principal.expires_at,
            "jti": principal.jti,
        }
        if session:
            claims["sid"] = session
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), principal

    def verify(self, token: str) -> Principal:
        """Decode and check a token; ``Unauthenticated`` for anything not valid right now."""
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached.expires_at:
                return cached
            del self._verified[token]
        principal = self._decode(token)
        if len(self._verified) >= CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = principal
        return principal

    def _decode(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired", code="token_expired") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("invalid token", code="invalid_token") from None
        role = claims.get("role")
        sub = claims.get("sub")
        jti = claims.get("jti")
        sid = claims.get("sid", "")
        if (
            role not in ("doctor", "patient")
            or not isinstance(sub, str)
            or not isinstance(jti, str)
            or not isinstance(sid, str)
        ):
            raise Unauthenticated("invalid token", code="invalid_token")
        return Principal(
            user_id=sub,
            role=role,
            jti=jti,
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
            session=sid,
        )
