"""Account security flows on top of :class:`AccountService`: 2FA management, the second login
step, step-up checks (erasure), password change.

Every check of a secret here (a code, the current password) first reserves a place in a
login gate and checks the client address, exactly as a login does, so guessing a code or a
password through any of these routes is limited like guessing it through the login
(``RateLimited``). The gate: for the second login step, the one the password step used (the trusted
device's, or the account's unknown clients'); for a signed-in caller, its session's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from engine.accounts import validators as v
from engine.accounts._mfa import invalid_code
from engine.errors import Invalid, Unauthenticated, Unavailable
from engine.store import ConditionFailed

if TYPE_CHECKING:
    from engine.accounts._core import AccountsCore
    from engine.accounts.models import MfaEnrolment, MfaLogin, PasswordChange, TokenPair
    from engine.principal import Principal
    from engine.store import Item

log = logging.getLogger("healthmed.accounts")

_RETRIES = 20


def _ref(principal: Principal) -> str:
    """The gate a signed-in caller's checks are limited in: its own session's (a login that
    already proved the password), so guesses at the account's login from unknown clients
    never stop its owner from changing the password or 2FA from a session they hold."""
    if principal.session:
        return f"session:{principal.session}"
    return f"user:{principal.user_id}"


def invalid_password() -> Invalid:
    return Invalid("the password is wrong", code="invalid_password")


class Security:
    def __init__(self, accounts: AccountsCore) -> None:
        self._accounts = accounts
        self._mfa = accounts.mfa
        self._limiter = accounts._limiter
        self._passwords = accounts._passwords

    async def _own_item(self, principal: Principal) -> Item:
        item = await self._accounts._profile_item(principal.user_id)
        if item is None:
            raise Unauthenticated("the account no longer exists", code="account_erased")
        return item

    # --- 2FA management ----------------------------------------------------------------------
    async def enrol_totp(self, principal: Principal, password: str, address: str) -> MfaEnrolment:
        """A new pending secret, once the caller gave the password again (``Invalid``
        ``invalid_password``): a stolen access token alone cannot bind its thief's
        authenticator to the account (and then hold the owner's second factor)."""
        item = await self._own_item(principal)
        await self.step_up(principal, password, None, address, item=item, code_needed=False)
        data = item.data
        name = str(data.get("email") or f"CRM {data.get('crm')}/{data.get('uf')}")
        return await self._mfa.enrol(principal.user_id, name)

    async def activate_totp(self, principal: Principal, code: str, address: str) -> list[str]:
        await self._own_item(principal)
        ref = _ref(principal)
        await self._limiter.attempt(ref, address)
        async with self._limiter.counting_failure(address):
            codes = await self._mfa.activate(principal.user_id, code)
        await self._limiter.succeeded(ref)
        log.info("2fa activated: %s", principal.user_id)
        return codes

    async def disable_mfa(self, principal: Principal, code: str, address: str) -> None:
        await self._own_item(principal)
        ref = _ref(principal)
        await self._limiter.attempt(ref, address)
        async with self._limiter.counting_failure(address):
            await self._mfa.disable(principal.user_id, code)
        await self._limiter.succeeded(ref)
        log.info("2fa disabled: %s", principal.user_id)

    # --- the second login step ---------------------------------------------------------------
    async def complete_mfa(self, body: MfaLogin, address: str) -> TokenPair:
        """``mfa_token`` + a TOTP or recovery code → a token pair. ``Unauthenticated`` for a wrong,
        replayed or spent code or token; each wrong code counts toward the login limits
        (``RateLimited``)."""
        if len(body.mfa_token) > 200:
            raise Unauthenticated(
                "the mfa_token is wrong, spent or expired", code="invalid_mfa_token"
            )
        user_id, role, device = await self._mfa.challenged(body.mfa_token)
        ref = self._accounts.gate(user_id, device)
        await self._limiter.attempt(ref, address)
        if not await self._mfa.consume(user_id, body.code):
            await self._limiter.failed(address)
            raise Unauthenticated("the code is wrong or was already used", code="invalid_code")
        user_id, role, device = await self._mfa.spend(body.mfa_token)
        if await self._accounts._profile_item(user_id) is None:
            raise Unauthenticated("wrong credentials", code="invalid_credentials")
        # The password step kept its place in the gate until the code was right.
        await self._limiter.succeeded(ref)
        return await self._accounts.issue_login(user_id, role, device)

    # --- step-up -----------------------------------------------------------------------------
    async def _check_password(self, item: Item, password: str) -> bool:
        if len(password) > v.PASSWORD_MAX:
            password = ""  # no stored password is this long; still spend a verify on it
        return await self._passwords.verify(item.data.get("password_hash"), password)

    async def step_up(
        self,
        principal: Principal,
        password: str,
        code: str | None,
        address: str,
        *,
        item: Item | None = None,
        code_needed: bool = True,
    ) -> None:
        """The caller proves it again: the password, and (``code_needed``) a code when 2FA is
        on (``Invalid`` ``invalid_password`` / ``invalid_code``), before an irreversible act
        (erasure) or a change of the second factor (enrolment)."""
        item = item or await self._own_item(principal)
        ref = _ref(principal)
        await self._limiter.attempt(ref, address)
        async with self._limiter.counting_failure(address):
            if not await self._check_password(item, password):
                raise invalid_password()
            if (
                code_needed
                and await self._mfa.active(principal.user_id)
                and (not code or not await self._mfa.consume(principal.user_id, code))
            ):
                raise invalid_code()
        await self._limiter.succeeded(ref)

    # --- password change ---------------------------------------------------------------------
    async def change_password(
        self, principal: Principal, body: PasswordChange, address: str
    ) -> None:
        """The current password and a new one (``Invalid`` ``invalid_password``, ``weak_password``);
        every other login of the account ends, this one goes on."""
        try:
            new = v.password(body.new_password)
        except Invalid as exc:  # keyed by the body's field, not the registration's
            raise Invalid(exc.detail, code=exc.code, field="new_password") from None
        item = await self._own_item(principal)
        ref = _ref(principal)
        await self._limiter.attempt(ref, address)
        if not await self._check_password(item, body.current_password):
            await self._limiter.failed(address)
            raise invalid_password()
        await self._limiter.succeeded(ref)
        await self.set_password(principal.user_id, new)
        await self._accounts.revoke_sessions(principal.user_id, keep=principal.session)
        await self._accounts.events.record(principal.user_id, "password.changed")
        log.info("password changed: %s", principal.user_id)

    async def set_password(self, user_id: str, password: str) -> None:
        """Store a new hash for ``password`` (already validated); optimistic lock."""
        digest = await self._passwords.hash(password)
        for _ in range(_RETRIES):
            item = await self._accounts._profile_item(user_id)
            if item is None:
                raise Unauthenticated("the account no longer exists", code="account_erased")
            data: dict[str, Any] = {**item.data, "password_hash": digest}
            try:
                await self._accounts._store.put(
                    msgspec.structs.replace(item, data=data), item.version
                )
            except ConditionFailed:
                continue
            return
        raise Unavailable("the account is being changed concurrently; retry", code="busy")
