"""TOTP two-factor authentication (RFC 6238 through pyotp): enrolment, codes, recovery codes.

State per account: ``USER#<id>/MFA`` holding ``status`` (``pending`` until a first code
confirms it, then ``active``), the TOTP secret *sealed* under a fresh data key wrapped by the
master key or KMS (:class:`engine.records.Sealer`, context ``{purpose: totp, user_id}``), the
SHA-256 hashes of the unused recovery codes, and ``last_step``, the last TOTP time step
accepted.

* A code is accepted once: a TOTP code matches a step within one step of now (clock drift)
  and only a step after ``last_step``; the step is recorded with a write conditioned on the
  version read, so of two requests racing with one code exactly one wins, whatever the
  replica. A recovery code is removed by the same kind of write.
* Recovery codes carry 64 random bits each, so an unsalted fast hash (SHA-256 with the user id)
  leaves a store dump nothing to brute-force; Argon2 would cost a hash per stored code on
  every try.
* The secret is never logged, never exported and never leaves this module but in the
  enrolment answer the user asked for.

``mfa_token`` (the second step of a login) is an opaque random string; Redis keeps only its
SHA-256 with the user and role for ``CHALLENGE_SECONDS``, and taking it is ``GETDEL``, so it
is spent by the one login it completes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING, Any

import msgspec
import pyotp

from engine import keys
from engine.accounts.models import MfaChallenge, MfaEnrolment
from engine.errors import Conflict, Invalid, Unauthenticated
from engine.records import SealedValue
from engine.store import ConditionFailed, Item
from engine.store import keys as store_keys
from engine.timeutil import now_ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.asyncio import Redis

    from engine.accounts._events import SecurityLog
    from engine.principal import Role
    from engine.records import Sealer
    from engine.store import Store

ISSUER = "Health&Med"
STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODES = 10
CHALLENGE_SECONDS = 300
_RETRIES = 10


def invalid_code() -> Invalid:
    return Invalid("the code is wrong or was already used", code="invalid_code")


def _context(user_id: str) -> dict[str, str]:
    return {"purpose": "totp", "user_id": user_id}


def _recovery_hash(user_id: str, code: str) -> str:
    return hashlib.sha256(f"{user_id}:{code}".encode()).hexdigest()


def _normal(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def _new_recovery_code() -> str:
    raw = secrets.token_hex(8)
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


class _Challenge(msgspec.Struct, frozen=True, array_like=True):
    user_id: str
    role: str
    device: str | None = None
    """The trusted device the password step came from (its gate limits the code step)."""


class Mfa:
    def __init__(
        self,
        store: Store,
        redis: Redis,
        sealer: Callable[[], Sealer],
        events: SecurityLog,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._redis = redis
        self._sealer = sealer
        self._events = events
        self._clock = clock

    # --- state -------------------------------------------------------------------------------
    async def _item(self, user_id: str) -> Item | None:
        return await self._store.get(store_keys.user_pk(user_id), store_keys.MFA_SK)

    async def active(self, user_id: str) -> bool:
        item = await self._item(user_id)
        return item is not None and item.data.get("status") == "active"

    async def _secret(self, user_id: str, data: dict[str, Any]) -> str:
        sealed = msgspec.convert(data["secret"], SealedValue)
        return (await self._sealer().unseal(sealed, _context(user_id))).decode()

    # --- enrolment ---------------------------------------------------------------------------
    async def enrol(self, user_id: str, account_name: str) -> MfaEnrolment:
        """A new pending secret (replacing an unconfirmed one); ``Conflict`` ``mfa_active`` if
        active."""
        for _ in range(_RETRIES):
            item = await self._item(user_id)
            if item is not None and item.data.get("status") == "active":
                raise Conflict("two-factor authentication is already active", code="mfa_active")
            secret = pyotp.random_base32()
            sealed = await self._sealer().seal(secret.encode(), _context(user_id))
            data = {"status": "pending", "secret": msgspec.to_builtins(sealed), "at": now_ms()}
            new = Item(pk=store_keys.user_pk(user_id), sk=store_keys.MFA_SK, data=data)
            try:
                await self._store.put(new, "absent" if item is None else item.version)
            except ConditionFailed:
                continue
            await self._events.record(user_id, "mfa.enrolled")
            uri = pyotp.TOTP(secret).provisioning_uri(name=account_name, issuer_name=ISSUER)
            return MfaEnrolment(secret=secret, otpauth_uri=uri)
        raise Conflict("two-factor settings changed concurrently; retry", code="busy")

    async def activate(self, user_id: str, code: str) -> list[str]:
        """Confirm the pending secret with a current code: the ten recovery codes (``Invalid``
        ``invalid_code`` for a wrong code or nothing pending)."""
        for _ in range(_RETRIES):
            item = await self._item(user_id)
            if item is None or item.data.get("status") != "pending":
                raise invalid_code()
            step = self._matching_step(await self._secret(user_id, item.data), _normal(code))
            if step is None:
                raise invalid_code()
            codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
            data = {
                **item.data,
                "status": "active",
                "last_step": step,
                "recovery": [_recovery_hash(user_id, _normal(c)) for c in codes],
                "activated_at": now_ms(),
            }
            try:
                await self._store.put(msgspec.structs.replace(item, data=data), item.version)
            except ConditionFailed:
                continue
            await self._events.record(user_id, "mfa.activated")
            return codes
        raise invalid_code()

    async def disable(self, user_id: str, code: str) -> None:
        """Turn 2FA off with a current TOTP code or an unused recovery code (else ``Invalid``)."""
        if not await self.consume(user_id, code):
            raise invalid_code()
        await self._store.delete(store_keys.user_pk(user_id), store_keys.MFA_SK)
        await self._events.record(user_id, "mfa.disabled")

    async def erase(self, user_id: str) -> None:
        await self._store.delete(store_keys.user_pk(user_id), store_keys.MFA_SK)

    # --- codes -------------------------------------------------------------------------------
    def _matching_step(self, secret: str, code: str) -> int | None:
        """The time step (within ``DRIFT_STEPS`` of now) whose code is ``code``, or None."""
        if len(code) != 6 or not code.isdigit():
            return None
        totp = pyotp.TOTP(secret)
        now = int(self._clock()) // STEP_SECONDS
        for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                return step
        return None

    async def consume(self, user_id: str, code: str) -> bool:
        """Spend ``code`` on an active account: a TOTP code of a step not yet used, or an
        unused recovery code. True if it was good (and is now spent)."""
        code = _normal(code)
        for _ in range(_RETRIES):
            item = await self._item(user_id)
            if item is None or item.data.get("status") != "active":
                return False
            data = dict(item.data)
            recovery = False
            step = self._matching_step(await self._secret(user_id, data), code)
            if step is not None:
                if step <= int(data.get("last_step", -1)):
                    return False  # replayed
                data["last_step"] = step
            else:
                digest = _recovery_hash(user_id, code)
                stored = list(data.get("recovery", []))
                remaining = [h for h in stored if not hmac.compare_digest(h, digest)]
                if len(remaining) == len(stored):
                    return False
                data["recovery"] = remaining
                recovery = True
            try:
                await self._store.put(msgspec.structs.replace(item, data=data), item.version)
            except ConditionFailed:
                continue  # another code was spent meanwhile: decide again on the new state
            if recovery:
                await self._events.record(user_id, "mfa.recovery_code_used")
            return True
        return False

    # --- the second step of a login ----------------------------------------------------------
    async def challenge(self, user_id: str, role: Role, device: str | None = None) -> MfaChallenge:
        token = secrets.token_urlsafe(32)
        value = msgspec.json.encode(_Challenge(user_id, role, device))
        await self._redis.set(keys.mfa_challenge(_token_hash(token)), value, ex=CHALLENGE_SECONDS)
        return MfaChallenge(mfa_token=token, expires_in=CHALLENGE_SECONDS)

    async def challenged(self, token: str) -> tuple[str, Role, str | None]:
        """The user, role and trusted device (or None) an unspent ``mfa_token`` names;
        ``Unauthenticated`` otherwise."""
        raw = await self._redis.get(keys.mfa_challenge(_token_hash(token)))
        return _decode_challenge(raw)

    async def spend(self, token: str) -> tuple[str, Role, str | None]:
        """Take the ``mfa_token`` (GETDEL: one login completes with it); ``Unauthenticated`` if
        gone."""
        raw = await self._redis.getdel(keys.mfa_challenge(_token_hash(token)))
        return _decode_challenge(raw)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _decode_challenge(raw: bytes | str | None) -> tuple[str, Role, str | None]:
    if raw is None:
        raise Unauthenticated("the mfa_token is wrong, spent or expired", code="invalid_mfa_token")
    challenge = msgspec.json.decode(raw, type=_Challenge)
    role: Role = "doctor" if challenge.role == "doctor" else "patient"
    return challenge.user_id, role, challenge.device
