"""TOTP 2FA, step-up and password change on AccountService (SQLite, real redis-server)."""

from __future__ import annotations

import asyncio
import os

import msgspec
import pyotp
import pytest
from redis.asyncio import Redis

from engine.accounts import (
    AccessTokens,
    AccountService,
    MfaChallenge,
    MfaLogin,
    PasswordChange,
    PatientLogin,
    PatientRegistration,
    TokenPair,
)
from engine.config import Settings
from engine.errors import Conflict, Invalid, RateLimited, Unauthenticated
from engine.principal import Principal
from engine.records import LocalKeyWrapper, Sealer
from engine.store import SQLiteStore
from tests.integration.test_accounts import make_cpf

ADDRESS = "198.51.100.9"
PASSWORD = "correct horse battery"
SETTINGS = Settings(
    jwt_secret="k" * 64,
    login_fail_limit_account=4,
    login_fail_limit_address=50,
    login_fail_window_seconds=60,
    hash_concurrency=2,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(store: SQLiteStore, redis: Redis, clock: Clock) -> AccountService:
    wrapper = LocalKeyWrapper(os.urandom(32))
    service = AccountService(
        SETTINGS, store, redis, AccessTokens(SETTINGS), sealer=Sealer(lambda: wrapper)
    )
    service.mfa._clock = clock
    return service


async def _patient(accounts: AccountService, n: int) -> tuple[str, Principal, TokenPair]:
    email = f"sec{n}@example.com"
    reg = PatientRegistration(name="P", email=email, cpf=make_cpf(), password=PASSWORD)
    await accounts.register_patient(reg)
    pair = await accounts.login_patient(PatientLogin(email=email, password=PASSWORD), ADDRESS)
    assert isinstance(pair, TokenPair)
    return email, accounts._tokens.verify(pair.access_token), pair


def _code(secret: str, clock: Clock, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.now + 30 * steps)


async def _with_2fa(
    accounts: AccountService, clock: Clock, n: int
) -> tuple[str, Principal, str, list[str]]:
    email, principal, _ = await _patient(accounts, n)
    enrolment = await accounts.security.enrol_totp(principal)
    codes = await accounts.security.activate_totp(
        principal, _code(enrolment.secret, clock), ADDRESS
    )
    return email, principal, enrolment.secret, codes


async def _challenge(accounts: AccountService, email: str) -> MfaChallenge:
    answer = await accounts.login_patient(PatientLogin(email=email, password=PASSWORD), ADDRESS)
    assert isinstance(answer, MfaChallenge)
    return answer


async def test_enrolment_gives_an_otpauth_uri_and_is_not_active_until_confirmed(
    accounts: AccountService,
) -> None:
    """Enrolment returns a base32 secret and an otpauth URI naming Health&Med; login still
    answers tokens until a code confirms it; a second enrolment replaces the first."""
    email, principal, _ = await _patient(accounts, 1)
    first = await accounts.security.enrol_totp(principal)
    assert first.otpauth_uri.startswith("otpauth://totp/")
    assert "issuer=Health%26Med" in first.otpauth_uri
    second = await accounts.security.enrol_totp(principal)
    assert second.secret != first.secret
    pair = await accounts.login_patient(PatientLogin(email=email, password=PASSWORD), ADDRESS)
    assert isinstance(pair, TokenPair)


async def test_wrong_activation_code_is_invalid_code(
    accounts: AccountService, clock: Clock
) -> None:
    """Activating with a code of another secret (or a code from 5 minutes ago) is 422."""
    _, principal, _ = await _patient(accounts, 2)
    enrolment = await accounts.security.enrol_totp(principal)
    for code in (
        pyotp.TOTP(pyotp.random_base32()).at(clock.now),
        _code(enrolment.secret, clock, -10),
    ):
        with pytest.raises(Invalid) as info:
            await accounts.security.activate_totp(principal, code, ADDRESS)
        assert info.value.code == "invalid_code"


async def test_two_step_login_accepts_a_code_once(accounts: AccountService, clock: Clock) -> None:
    """With 2FA on, the password gives a challenge, the code gives tokens, and the same code
    on a second login is refused (401) while the next step's code works."""
    email, _, secret, codes = await _with_2fa(accounts, clock, 3)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    clock.now += 30  # the activation spent this step's code
    challenge = await _challenge(accounts, email)
    assert challenge.expires_in == 300
    code = _code(secret, clock)
    pair = await accounts.security.complete_mfa(
        MfaLogin(mfa_token=challenge.mfa_token, code=code), ADDRESS
    )
    assert accounts._tokens.verify(pair.access_token).session
    again = await _challenge(accounts, email)
    with pytest.raises(Unauthenticated):
        await accounts.security.complete_mfa(
            MfaLogin(mfa_token=again.mfa_token, code=code), ADDRESS
        )
    clock.now += 30
    await accounts.security.complete_mfa(
        MfaLogin(mfa_token=again.mfa_token, code=_code(secret, clock)), ADDRESS
    )


async def test_an_mfa_token_is_spent_by_the_login_it_completes(
    accounts: AccountService, clock: Clock
) -> None:
    """After a completed login the same mfa_token is 401 even with a fresh code."""
    email, _, secret, _ = await _with_2fa(accounts, clock, 4)
    clock.now += 30
    challenge = await _challenge(accounts, email)
    body = MfaLogin(mfa_token=challenge.mfa_token, code=_code(secret, clock))
    await accounts.security.complete_mfa(body, ADDRESS)
    clock.now += 30
    with pytest.raises(Unauthenticated) as info:
        await accounts.security.complete_mfa(
            MfaLogin(mfa_token=challenge.mfa_token, code=_code(secret, clock)), ADDRESS
        )
    assert info.value.code == "invalid_mfa_token"


async def test_racing_completions_with_one_code_have_one_winner(
    accounts: AccountService, clock: Clock
) -> None:
    """Ten logins racing with one TOTP code: exactly one gets tokens."""
    accounts._limiter.account_limit = 100  # ten password steps and ten codes: not a guesser
    email, _, secret, _ = await _with_2fa(accounts, clock, 5)
    clock.now += 30
    challenges = [await _challenge(accounts, email) for _ in range(10)]
    code = _code(secret, clock)
    results = await asyncio.gather(
        *(
            accounts.security.complete_mfa(MfaLogin(mfa_token=c.mfa_token, code=code), ADDRESS)
            for c in challenges
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, TokenPair) for r in results) == 1
    assert all(isinstance(r, (TokenPair, Unauthenticated)) for r in results)


async def test_each_recovery_code_works_once(accounts: AccountService, clock: Clock) -> None:
    """A recovery code completes one login; the same code again is 401."""
    email, _, _, codes = await _with_2fa(accounts, clock, 6)
    challenge = await _challenge(accounts, email)
    await accounts.security.complete_mfa(
        MfaLogin(mfa_token=challenge.mfa_token, code=codes[0].upper()), ADDRESS
    )
    again = await _challenge(accounts, email)
    with pytest.raises(Unauthenticated):
        await accounts.security.complete_mfa(
            MfaLogin(mfa_token=again.mfa_token, code=codes[0]), ADDRESS
        )


async def test_wrong_codes_count_toward_the_login_limit(
    accounts: AccountService, clock: Clock
) -> None:
    """Past the account limit, even the right code is refused with 429."""
    email, _, secret, _ = await _with_2fa(accounts, clock, 7)
    clock.now += 30
    challenge = await _challenge(accounts, email)
    outcomes = []
    for _ in range(5):
        try:
            await accounts.security.complete_mfa(
                MfaLogin(mfa_token=challenge.mfa_token, code="000000"), ADDRESS
            )
        except (Unauthenticated, RateLimited) as exc:
            outcomes.append(type(exc).__name__)
    assert "RateLimited" in outcomes
    with pytest.raises(RateLimited):
        await accounts.security.complete_mfa(
            MfaLogin(mfa_token=challenge.mfa_token, code=_code(secret, clock)), ADDRESS
        )


async def test_the_secret_is_stored_sealed_and_never_exported(
    accounts: AccountService, store: SQLiteStore, clock: Clock
) -> None:
    """The store item holds no secret in the clear; the export says 2FA is on, lists the
    events, and carries neither the secret nor recovery codes or their hashes."""
    _, principal, secret, codes = await _with_2fa(accounts, clock, 8)
    item = await store.get(f"USER#{principal.user_id}", "MFA")
    assert item is not None
    stored = msgspec.json.encode(item.data).decode()
    assert secret not in stored
    assert secret.lower() not in stored
    assert all(c not in stored for c in codes)
    export = await accounts.export_user(principal)
    dumped = msgspec.json.encode(export).decode()
    assert export["mfa"] == {"active": True}
    assert [e["kind"] for e in export["security_events"]] == ["mfa.enrolled", "mfa.activated"]
    for hidden in (secret, codes[0], item.data["recovery"][0], item.data["secret"]["ciphertext"]):
        assert hidden not in dumped


async def test_a_sealed_secret_copied_to_another_account_does_not_open(
    accounts: AccountService, store: SQLiteStore, clock: Clock
) -> None:
    """The seal is bound to its user: moved under another user it fails to verify."""
    _, victim, _, _ = await _with_2fa(accounts, clock, 9)
    _, other, _, _ = await _with_2fa(accounts, clock, 10)
    item = await store.get(f"USER#{victim.user_id}", "MFA")
    assert item is not None
    with pytest.raises(Exception, match="verify"):
        await accounts.mfa._secret(other.user_id, item.data)


async def test_disabling_needs_a_code_and_brings_back_plain_login(
    accounts: AccountService, clock: Clock
) -> None:
    """Disabling with a wrong code is 422; with a recovery code it works and the password
    alone logs in again; enrolling while active was 409."""
    email, principal, _, codes = await _with_2fa(accounts, clock, 11)
    with pytest.raises(Conflict) as conflict:
        await accounts.security.enrol_totp(principal)
    assert conflict.value.code == "mfa_active"
    with pytest.raises(Invalid) as info:
        await accounts.security.disable_mfa(principal, "123456", ADDRESS)
    assert info.value.code == "invalid_code"
    await accounts.security.disable_mfa(principal, codes[3], ADDRESS)
    pair = await accounts.login_patient(PatientLogin(email=email, password=PASSWORD), ADDRESS)
    assert isinstance(pair, TokenPair)


async def test_step_up_wants_the_password_and_with_2fa_a_code(
    accounts: AccountService, clock: Clock
) -> None:
    """Erasure's step-up: wrong password 422 invalid_password; 2FA on and no or a wrong code
    422 invalid_code; the right pair passes."""
    _, principal, secret, _ = await _with_2fa(accounts, clock, 12)
    with pytest.raises(Invalid) as info:
        await accounts.security.step_up(principal, "wrong password", None, ADDRESS)
    assert info.value.code == "invalid_password"
    for code in (None, "999999"):
        with pytest.raises(Invalid) as info:
            await accounts.security.step_up(principal, PASSWORD, code, ADDRESS)
        assert info.value.code == "invalid_code"
    clock.now += 30
    await accounts.security.step_up(principal, PASSWORD, _code(secret, clock), ADDRESS)


async def test_password_change_ends_every_other_session(accounts: AccountService) -> None:
    """After a change: the other login's refresh and access tokens are refused, this login's
    access token works and refreshes, the old password fails, the new one logs in."""
    email, principal, pair = await _patient(accounts, 13)
    other = await accounts.login_patient(PatientLogin(email=email, password=PASSWORD), ADDRESS)
    assert isinstance(other, TokenPair)
    other_principal = accounts._tokens.verify(other.access_token)
    with pytest.raises(Invalid) as info:
        await accounts.security.change_password(
            principal, PasswordChange(current_password="nope nope", new_password="x" * 12), ADDRESS
        )
    assert info.value.code == "invalid_password"
    new = "a brand new passphrase"
    await accounts.security.change_password(
        principal, PasswordChange(current_password=PASSWORD, new_password=new), ADDRESS
    )
    with pytest.raises(Unauthenticated):
        await accounts.check_not_revoked(other_principal)
    with pytest.raises(Unauthenticated):
        await accounts.refresh(other.refresh_token)
    await accounts.check_not_revoked(principal)
    await accounts.refresh(pair.refresh_token)
    with pytest.raises(Unauthenticated):
        await accounts.login_patient(PatientLogin(email=email, password=PASSWORD), ADDRESS)
    assert isinstance(
        await accounts.login_patient(PatientLogin(email=email, password=new), ADDRESS), TokenPair
    )
    events = (await accounts.export_user(principal))["security_events"]
    assert [e["kind"] for e in events] == ["password.changed"]
