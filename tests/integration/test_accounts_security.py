"""TOTP 2FA, step-up and password change on AccountService (SQLite, real redis-server)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

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
    enrolment = await accounts.security.enrol_totp(principal, PASSWORD, ADDRESS)
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
    first = await accounts.security.enrol_totp(principal, PASSWORD, ADDRESS)
    assert first.otpauth_uri.startswith("otpauth://totp/")
    assert "issuer=Health%26Med" in first.otpauth_uri
    second = await accounts.security.enrol_totp(principal, PASSWORD, ADDRESS)
    assert second.secret != first.secret
    pair = await accounts.login_patient(PatientLogin(email=email, password=PASSWORD), ADDRESS)
    assert isinstance(pair, TokenPair)


async def test_enrolment_needs_the_password_again(accounts: AccountService) -> None:
    """A bearer token alone does not enrol: a wrong password is 422 ``invalid_password``
    (nothing pending afterwards, counted like a login failure: 429 past the account's
    limit), the right one gives a secret."""
    _, principal, _ = await _patient(accounts, 21)
    for _ in range(SETTINGS.login_fail_limit_account):
        with pytest.raises(Invalid) as info:
            await accounts.security.enrol_totp(principal, "not the password", ADDRESS)
        assert info.value.code == "invalid_password"
    assert await accounts.mfa._item(principal.user_id) is None
    with pytest.raises(RateLimited):
        await accounts.security.enrol_totp(principal, PASSWORD, ADDRESS)


async def test_wrong_activation_code_is_invalid_code(
    accounts: AccountService, clock: Clock
) -> None:
    """Activating with a code of another secret (or a code from 5 minutes ago) is 422."""
    _, principal, _ = await _patient(accounts, 2)
    enrolment = await accounts.security.enrol_totp(principal, PASSWORD, ADDRESS)
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
        await accounts.security.enrol_totp(principal, PASSWORD, ADDRESS)
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


# --- registration limits and hashing permits (finding 5) -----------------------------------
async def test_registrations_from_one_address_are_limited(store: SQLiteStore, redis: Redis) -> None:
    """Past the per-address limit (3 here) the address gets 429; another address does not."""
    settings = Settings(jwt_secret="k" * 64, registration_limit_address=3)
    service = AccountService(settings, store, redis, AccessTokens(settings))
    for _ in range(3):
        await service.check_address_rate("203.0.113.50")
    with pytest.raises(RateLimited) as info:
        await service.check_address_rate("203.0.113.50")
    assert info.value.code == "too_many_requests"
    await service.check_address_rate("203.0.113.51")


async def test_a_login_does_not_queue_behind_registrations(
    store: SQLiteStore, redis: Redis
) -> None:
    """With one hashing permit held by stalled registrations, a login still completes."""
    import threading

    settings = Settings(jwt_secret="k" * 64, hash_concurrency=1)
    service = AccountService(settings, store, redis, AccessTokens(settings))
    email = "queue@example.com"
    reg = PatientRegistration(name="P", email=email, cpf=make_cpf(), password=PASSWORD)
    await service.register_patient(reg)
    gate = threading.Event()
    real = service._passwords._hasher

    class Stalled:
        """Registrations' hashes wait at the gate; verifies run as ever."""

        def hash(self, password: str) -> str:
            gate.wait(30)
            return real.hash(password)

        def verify(self, stored: str, password: str) -> bool:
            return real.verify(stored, password)

    service._passwords._hasher = Stalled()  # type: ignore[assignment]
    pending = [
        asyncio.create_task(
            service.register_patient(
                PatientRegistration(
                    name="Q", email=f"q{i}@example.com", cpf=make_cpf(), password=PASSWORD
                )
            )
        )
        for i in range(3)
    ]
    await asyncio.sleep(0.2)
    try:
        pair = await asyncio.wait_for(
            service.login_patient(PatientLogin(email=email, password=PASSWORD), ADDRESS), 10
        )
        assert isinstance(pair, TokenPair)
        assert not any(task.done() for task in pending)
    finally:
        gate.set()
        await asyncio.gather(*pending)


# --- password reset -------------------------------------------------------------------------
class Outbox:
    """The notifications outbox port: queues each message as an item of the same
    transaction (as engine.notifications does) and keeps the contexts to read the code."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, dict[str, object]]] = []

    def put_ops(self, kind, recipient_id, context, *, key, at, to=None):  # type: ignore[no-untyped-def]
        from engine.store import Item, Put

        self.sent.append((kind, str(to), recipient_id, dict(context)))
        item = Item(pk=f"USER#{recipient_id}", sk=f"NOTIF#{key}", data={"context": dict(context)})
        return [Put(item=item, expect="absent")]

    def wake(self) -> None:
        return None


async def _reset_code(accounts: AccountService, outbox: Outbox, email: str) -> str:
    from engine.accounts import PasswordReset

    accounts.resets.request(PasswordReset(email=email))
    await accounts.resets.drain()
    kind, to, recipient_id, context = outbox.sent[-1]
    assert (kind, to) == ("password.reset", email)
    assert "code" not in context  # sealed; only the e-mail's rendering opens it
    return str((await accounts.resets.open_context(recipient_id, context))["code"])


async def test_the_reset_code_waits_sealed_in_the_outbox(
    accounts: AccountService, store: SQLiteStore, tmp_path: Path
) -> None:
    """Through the real outbox and file transport: while the reset e-mail is queued, neither
    the store's items nor its database files hold the code the e-mail then carries; the
    sealed code opens for its own account only."""
    from engine.accounts import PasswordReset
    from engine.notifications import INDEX, Contact, FileTransport, Messages
    from engine.notifications import Outbox as RealOutbox

    class Contacts:
        async def contact(self, user_id: str) -> Contact | None:
            return None

    settings = Settings(mail_poll_seconds=0.05)
    folder = tmp_path / "mail"
    outbox = RealOutbox(settings, store, Messages(settings), Contacts(), FileTransport(folder))
    outbox.openers["password.reset"] = accounts.resets.open_context
    accounts.resets.outbox = outbox
    email, _, _ = await _patient(accounts, 24)
    accounts.resets.request(PasswordReset(email=email))
    await accounts.resets.drain()
    [queued] = await store.query_index(INDEX)
    assert "sealed_code" in queued.data["context"]
    with pytest.raises(Exception, match="verify"):
        await accounts.resets.open_context("someone-else", queued.data["context"])
    stored = [msgspec.json.encode(i.data) for i in await store.query(queued.pk)]
    dump = b"".join(p.read_bytes() for p in tmp_path.glob("store.sqlite3*"))
    assert await outbox.drain_once() == 1
    [path] = list(folder.glob("*.eml"))
    [code] = re.findall(r"^Code: (\S+)$", path.read_text(), re.MULTILINE)
    assert len(code) >= 32
    for raw in [*stored, dump]:
        assert code.encode() not in raw


async def test_a_reset_code_sets_the_password_once_and_ends_every_session(
    accounts: AccountService, store: SQLiteStore
) -> None:
    """The e-mailed code sets a new password and revokes every session; the same code again,
    a wrong one and an unknown account's request all change nothing; only the hash of the
    code is stored."""
    from engine.accounts import PasswordReset, PasswordResetConfirm

    outbox = Outbox()
    accounts.resets.outbox = outbox
    email, principal, pair = await _patient(accounts, 20)
    accounts.resets.request(PasswordReset(email="nobody-here@example.com"))
    await accounts.resets.drain()
    assert outbox.sent == []
    code = await _reset_code(accounts, outbox, email)
    with pytest.raises(Invalid) as info:
        await accounts.resets.confirm(PasswordResetConfirm(token=code + "x", password="x" * 12))
    assert info.value.code == "invalid_reset_token"
    new = "reset passphrase 42"
    await accounts.resets.confirm(PasswordResetConfirm(token=code, password=new))
    with pytest.raises(Invalid) as info:
        await accounts.resets.confirm(PasswordResetConfirm(token=code, password="y" * 12))
    assert info.value.code == "invalid_reset_token"
    with pytest.raises(Unauthenticated):
        await accounts.check_not_revoked(principal)
    with pytest.raises(Unauthenticated):
        await accounts.refresh(pair.refresh_token)
    with pytest.raises(Unauthenticated):
        await accounts.login_patient(PatientLogin(email=email, password=PASSWORD), ADDRESS)
    assert isinstance(
        await accounts.login_patient(PatientLogin(email=email, password=new), ADDRESS), TokenPair
    )
    fresh = await accounts.login_patient(PatientLogin(email=email, password=new), ADDRESS)
    assert isinstance(fresh, TokenPair)
    export = await accounts.export_user(accounts._tokens.verify(fresh.access_token))
    kinds = [e["kind"] for e in export["security_events"]]
    assert kinds == ["password.reset_requested", "password.reset"]


async def test_a_new_password_voids_every_reset_code_sent_before_it(
    accounts: AccountService, store: SQLiteStore
) -> None:
    """Two codes sent, one spent: the other is invalid_reset_token; a code sent before a
    password change is void too (an old reset e-mail cannot take the account back)."""
    from engine.accounts import PasswordChange, PasswordResetConfirm

    outbox = Outbox()
    accounts.resets.outbox = outbox
    email, _, _ = await _patient(accounts, 23)
    first = await _reset_code(accounts, outbox, email)
    second = await _reset_code(accounts, outbox, email)
    await accounts.resets.confirm(PasswordResetConfirm(token=first, password="first new pass"))
    with pytest.raises(Invalid) as info:
        await accounts.resets.confirm(PasswordResetConfirm(token=second, password="y" * 12))
    assert info.value.code == "invalid_reset_token"
    fresh = await accounts.login_patient(
        PatientLogin(email=email, password="first new pass"), ADDRESS
    )
    assert isinstance(fresh, TokenPair)
    third = await _reset_code(accounts, outbox, email)
    await accounts.security.change_password(
        accounts._tokens.verify(fresh.access_token),
        PasswordChange(current_password="first new pass", new_password="changed by owner"),
        ADDRESS,
    )
    with pytest.raises(Invalid) as info:
        await accounts.resets.confirm(PasswordResetConfirm(token=third, password="z" * 12))
    assert info.value.code == "invalid_reset_token"


async def test_a_reset_code_expires_after_thirty_minutes(
    accounts: AccountService, store: SQLiteStore
) -> None:
    """A code older than 30 minutes is invalid_reset_token."""
    from engine.accounts import PasswordResetConfirm
    from engine.store.keys import reset_pk as _pk

    outbox = Outbox()
    accounts.resets.outbox = outbox
    email, _, _ = await _patient(accounts, 21)
    code = await _reset_code(accounts, outbox, email)
    item = await store.get(_pk(code), "RESET")
    assert item is not None
    assert code not in msgspec.json.encode(item.data).decode()
    await store.put(
        msgspec.structs.replace(
            item, data={**item.data, "expires_at": item.data["expires_at"] - 30 * 60_000}
        )
    )
    with pytest.raises(Invalid) as info:
        await accounts.resets.confirm(PasswordResetConfirm(token=code, password="z" * 12))
    assert info.value.code == "invalid_reset_token"


async def test_racing_confirmations_with_one_code_have_one_winner(
    accounts: AccountService,
) -> None:
    """Five confirmations with one code: one sets its password, four get invalid_reset_token."""
    from engine.accounts import PasswordResetConfirm

    outbox = Outbox()
    accounts.resets.outbox = outbox
    email, _, _ = await _patient(accounts, 22)
    code = await _reset_code(accounts, outbox, email)
    results = await asyncio.gather(
        *(
            accounts.resets.confirm(PasswordResetConfirm(token=code, password=f"racer {i} pass"))
            for i in range(5)
        ),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, Invalid) for r in results if r is not None)


async def test_a_reset_request_answers_before_looking_the_account_up(
    accounts: AccountService, store: SQLiteStore
) -> None:
    """request() returns without touching the store, known account or not: the answer and
    its time cannot tell whether the account exists."""
    from engine.accounts import PasswordReset

    accounts.resets.outbox = Outbox()
    email, _, _ = await _patient(accounts, 23)
    calls: list[str] = []
    real_get = store.get

    async def counting_get(pk: str, sk: str):  # type: ignore[no-untyped-def]
        calls.append(pk)
        return await real_get(pk, sk)

    store.get = counting_get  # type: ignore[method-assign]
    for target in (email, "unknown-person@example.com"):
        accounts.resets.request(PasswordReset(email=target))
        assert calls == []
    await accounts.resets.drain()
    assert calls
