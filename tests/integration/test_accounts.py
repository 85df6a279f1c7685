"""AccountService on SQLite and a real redis-server: uniqueness under concurrency, login limits,
refresh rotation and reuse, revocation, ratings and erasure."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from engine import keys
from engine.accounts import (
    AccessTokens,
    AccountService,
    DoctorLogin,
    DoctorPatch,
    DoctorRegistration,
    Location,
    PatientLogin,
    PatientRegistration,
)
from engine.accounts._ratelimit import LoginLimiter
from engine.config import Settings
from engine.directory import DirectoryService
from engine.errors import Conflict, NotFound, RateLimited, Unauthenticated
from engine.redis_client import connect_redis
from engine.store import Check, ConditionFailed, Item, Put, SQLiteStore
from tests.support import timeout

ADDRESS = "203.0.113.7"
PASSWORD = "correct horse battery"

_cpf_seq = iter(range(100_000_000, 999_999_999))


def make_cpf() -> str:
    from engine.accounts.validators import cpf_check_digits

    base = f"{next(_cpf_seq):09d}"
    return base + cpf_check_digits(base)


SETTINGS = Settings(
    jwt_secret="k" * 64,
    login_fail_limit_account=3,
    login_fail_limit_address=10,
    login_fail_window_seconds=60,
    hash_concurrency=2,
)


@pytest.fixture
def accounts(store: SQLiteStore, redis: Redis) -> AccountService:
    return AccountService(SETTINGS, store, redis, AccessTokens(SETTINGS))


def doctor_reg(n: int, **overrides: object) -> DoctorRegistration:
    fields: dict[str, object] = {
        "name": f"Dr {n}",
        "crm": str(10_000 + n),
        "uf": "SP",
        "email": f"doctor{n}@example.com",
        "password": PASSWORD,
        "specialty": "cardiologia",
        "price_cents": 20_000,
        "location": Location(lat=-23.55, lon=-46.63),
    }
    fields.update(overrides)
    return DoctorRegistration(**fields)  # type: ignore[arg-type]


def patient_reg(n: int, **overrides: object) -> PatientRegistration:
    fields: dict[str, object] = {
        "name": f"Patient {n}",
        "email": f"patient{n}@example.com",
        "cpf": make_cpf(),
        "password": PASSWORD,
    }
    fields.update(overrides)
    return PatientRegistration(**fields)  # type: ignore[arg-type]


# --- uniqueness -----------------------------------------------------------------------------
async def test_twenty_concurrent_registrations_with_one_email_yield_one_account(
    accounts: AccountService,
) -> None:
    """20 registrations racing with the same e-mail: exactly one succeeds, 19 get 409."""
    regs = [patient_reg(i, email="same@example.com") for i in range(20)]
    results = await asyncio.gather(
        *(accounts.register_patient(r) for r in regs), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(winners) == 1
    assert len(losers) == 19
    assert {e.code for e in losers} == {"duplicate_account"}


async def test_concurrent_doctors_with_one_crm_and_uf_yield_one_account(
    accounts: AccountService,
) -> None:
    """(crm, uf) is unique: of 10 racing doctors with different e-mails, one registers."""
    results = await asyncio.gather(
        *(accounts.register_doctor(doctor_reg(i, crm="55555")) for i in range(10)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))


async def test_same_crm_in_another_uf_is_another_doctor(accounts: AccountService) -> None:
    """CRM numbers are per state: 12345/SP and 12345/RJ are two doctors."""
    await accounts.register_doctor(doctor_reg(1, crm="12345", uf="SP"))
    await accounts.register_doctor(doctor_reg(2, crm="12345", uf="RJ"))


async def test_duplicate_cpf_names_the_field(accounts: AccountService) -> None:
    """A second patient with the same CPF (other punctuation) is 409 naming ``cpf``."""
    cpf = make_cpf()
    await accounts.register_patient(patient_reg(1, cpf=cpf))
    punctuated = f"{cpf[:3]}.{cpf[3:6]}.{cpf[6:9]}-{cpf[9:]}"
    with pytest.raises(Conflict) as info:
        await accounts.register_patient(patient_reg(2, cpf=punctuated))
    assert info.value.fields["errors"][0]["key"] == "cpf"


async def test_password_is_stored_as_argon2id_hash(
    accounts: AccountService, store: SQLiteStore
) -> None:
    """The profile holds an Argon2id hash with OWASP parameters, never the password."""
    profile = await accounts.register_patient(patient_reg(1))
    item = await store.get(f"USER#{profile.id}", "PROFILE")
    assert item is not None
    stored = item.data["password_hash"]
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in msgspec.json.encode(item.data).decode()


# --- login ----------------------------------------------------------------------------------
async def test_wrong_password_and_unknown_account_fail_identically(
    accounts: AccountService,
) -> None:
    """Unknown account and wrong password raise the same code and detail."""
    await accounts.register_patient(patient_reg(1))
    errors = []
    for body in (
        PatientLogin(email="patient1@example.com", password="wrong password"),
        PatientLogin(email="nobody@example.com", password="wrong password"),
    ):
        with pytest.raises(Unauthenticated) as info:
            await accounts.login_patient(body, ADDRESS)
        errors.append((info.value.code, info.value.detail, info.value.fields))
    assert errors[0] == errors[1]
    assert errors[0][0] == "invalid_credentials"


async def test_patient_logs_in_by_email_cpf_or_both(accounts: AccountService) -> None:
    """E-mail alone, CPF alone and both together open a session; mismatched pair is 401."""
    reg = patient_reg(1)
    await accounts.register_patient(reg)
    other = patient_reg(2)
    await accounts.register_patient(other)
    for body in (
        PatientLogin(email=reg.email, password=PASSWORD),
        PatientLogin(cpf=reg.cpf, password=PASSWORD),
        PatientLogin(email=reg.email.upper(), cpf=reg.cpf, password=PASSWORD),
    ):
        pair = await accounts.login_patient(body, ADDRESS)
        assert pair.token_type == "Bearer"
    with pytest.raises(Unauthenticated):
        await accounts.login_patient(
            PatientLogin(email=reg.email, cpf=other.cpf, password=PASSWORD), ADDRESS
        )


async def test_doctor_password_does_not_open_a_patient_login(accounts: AccountService) -> None:
    """Doctor login only finds doctors: a doctor's CRM login with a wrong UF is 401."""
    await accounts.register_doctor(doctor_reg(1, crm="4444", uf="MG"))
    await accounts.login_doctor(DoctorLogin(crm="4444", uf="mg", password=PASSWORD), ADDRESS)
    with pytest.raises(Unauthenticated):
        await accounts.login_doctor(DoctorLogin(crm="4444", uf="SP", password=PASSWORD), ADDRESS)


async def test_account_limit_refuses_before_checking_the_password(
    accounts: AccountService,
) -> None:
    """After 3 failures even the right password is 429, with a retry_after."""
    reg = patient_reg(1)
    await accounts.register_patient(reg)
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await accounts.login_patient(
                PatientLogin(email=reg.email, password="nope nope"), ADDRESS
            )
    with pytest.raises(RateLimited) as info:
        await accounts.login_patient(PatientLogin(email=reg.email, password=PASSWORD), ADDRESS)
    assert info.value.code == "too_many_attempts"
    assert 0 < info.value.retry_after <= 60


async def test_success_clears_the_account_counter(accounts: AccountService) -> None:
    """Two failures, a success, then two more failures: still not limited."""
    reg = patient_reg(1)
    await accounts.register_patient(reg)
    bad = PatientLogin(email=reg.email, password="nope nope")
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await accounts.login_patient(bad, ADDRESS)
    await accounts.login_patient(PatientLogin(email=reg.email, password=PASSWORD), ADDRESS)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await accounts.login_patient(bad, ADDRESS)
    await accounts.login_patient(PatientLogin(email=reg.email, password=PASSWORD), ADDRESS)


async def test_limit_counts_one_account_whichever_identifier(accounts: AccountService) -> None:
    """Failures by e-mail and by CPF count against the same account."""
    reg = patient_reg(1)
    await accounts.register_patient(reg)
    for body in (
        PatientLogin(email=reg.email, password="nope nope"),
        PatientLogin(cpf=reg.cpf, password="nope nope"),
        PatientLogin(email=reg.email, password="nope nope"),
    ):
        with pytest.raises(Unauthenticated):
            await accounts.login_patient(body, ADDRESS)
    with pytest.raises(RateLimited):
        await accounts.login_patient(PatientLogin(cpf=reg.cpf, password=PASSWORD), ADDRESS)


async def test_hashing_runs_off_the_event_loop_within_the_cap(accounts: AccountService) -> None:
    """Argon2 never runs on the event loop's thread, and never more than the cap at once."""
    import threading

    regs = [patient_reg(i) for i in range(6)]
    for reg in regs:
        await accounts.register_patient(reg)
    loop_thread = threading.get_ident()
    passwords = accounts._passwords
    real_check = passwords._check
    lock = threading.Lock()
    running = peak = calls = 0
    threads: set[int] = set()

    def verify(stored: str, password: str) -> bool:
        nonlocal running, peak, calls
        with lock:
            running += 1
            calls += 1
            peak = max(peak, running)
            threads.add(threading.get_ident())
        try:
            time.sleep(0.02)  # widen the window in which overlapping calls would be seen
            return real_check(stored, password)
        finally:
            with lock:
                running -= 1

    passwords._check = verify  # type: ignore[method-assign]
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0)
            ticks += 1

    tick = asyncio.create_task(ticker())
    await asyncio.gather(
        *(
            accounts.login_patient(
                PatientLogin(email=regs[i % 6].email, password=PASSWORD), ADDRESS
            )
            for i in range(8)
        )
    )
    done.set()
    await tick
    assert calls == 8
    assert loop_thread not in threads
    assert peak == SETTINGS.hash_concurrency
    assert ticks > 12  # the loop kept turning while the hashes ran


# --- refresh, logout, revocation --------------------------------------------------------------
async def test_refresh_rotates_and_reuse_revokes_the_family(accounts: AccountService) -> None:
    """A spent refresh token is 401 and kills its successor and the access tokens issued."""
    reg = patient_reg(1)
    await accounts.register_patient(reg)
    first = await accounts.login_patient(PatientLogin(email=reg.email, password=PASSWORD), ADDRESS)
    second = await accounts.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    issued = accounts._tokens.verify(second.access_token)
    await accounts.check_not_revoked(issued)
    with pytest.raises(Unauthenticated) as info:
        await accounts.refresh(first.refresh_token)
    assert info.value.code == "refresh_token_reused"
    with pytest.raises(Unauthenticated):
        await accounts.refresh(second.refresh_token)
    with pytest.raises(Unauthenticated):
        await accounts.check_not_revoked(issued)


async def test_concurrent_refresh_with_one_token_has_one_winner(accounts: AccountService) -> None:
    """Ten refreshes racing with the same token: at most one new pair is issued."""
    reg = patient_reg(1)
    await accounts.register_patient(reg)
    pair = await accounts.login_patient(PatientLogin(email=reg.email, password=PASSWORD), ADDRESS)
    results = await asyncio.gather(
        *(accounts.refresh(pair.refresh_token) for _ in range(10)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1


@pytest.mark.parametrize("token", ["", "nodot", ".x", "x.", "01ABC.garbage"])
async def test_garbage_refresh_token_is_401(accounts: AccountService, token: str) -> None:
    """Malformed or unknown refresh tokens are ``invalid_refresh_token``."""
    with pytest.raises(Unauthenticated) as info:
        await accounts.refresh(token)
    assert info.value.code == "invalid_refresh_token"


async def test_logout_revokes_access_token_and_refresh_family(accounts: AccountService) -> None:
    """After logout the access token and the refresh token are both refused."""
    reg = patient_reg(1)
    await accounts.register_patient(reg)
    pair = await accounts.login_patient(PatientLogin(email=reg.email, password=PASSWORD), ADDRESS)
    principal = accounts._tokens.verify(pair.access_token)
    await accounts.check_not_revoked(principal)
    await accounts.logout(principal, pair.refresh_token)
    with pytest.raises(Unauthenticated):
        await accounts.check_not_revoked(principal)
    with pytest.raises(Unauthenticated):
        await accounts.refresh(pair.refresh_token)


async def test_logout_cannot_revoke_someone_elses_family(accounts: AccountService) -> None:
    """A refresh token of another user given to logout stays valid."""
    a, b = patient_reg(1), patient_reg(2)
    await accounts.register_patient(a)
    await accounts.register_patient(b)
    pa = await accounts.login_patient(PatientLogin(email=a.email, password=PASSWORD), ADDRESS)
    pb = await accounts.login_patient(PatientLogin(email=b.email, password=PASSWORD), ADDRESS)
    await accounts.logout(accounts._tokens.verify(pa.access_token), pb.refresh_token)
    await accounts.refresh(pb.refresh_token)


async def test_refresh_survives_a_flushed_redis(accounts: AccountService, redis: Redis) -> None:
    """Refresh families live in the store: a flushed Redis still refreshes."""
    reg = patient_reg(1)
    await accounts.register_patient(reg)
    pair = await accounts.login_patient(PatientLogin(email=reg.email, password=PASSWORD), ADDRESS)
    await redis.flushdb()
    await accounts.refresh(pair.refresh_token)


# --- profiles, ratings, erasure ---------------------------------------------------------------
async def test_patch_moves_the_doctor_between_specialties(
    accounts: AccountService, store: SQLiteStore, redis: Redis
) -> None:
    """A new specialty removes the doctor from the old one in the directory."""
    profile = await accounts.register_doctor(doctor_reg(1))
    pair = await accounts.login_doctor(
        DoctorLogin(crm=profile.crm, uf=profile.uf, password=PASSWORD), ADDRESS
    )
    principal = accounts._tokens.verify(pair.access_token)
    updated = await accounts.update_doctor(
        principal, DoctorPatch(specialty="Dermatologia", price_cents=30_000)
    )
    assert (updated.specialty, updated.price.amount_cents) == ("dermatologia", 30_000)
    assert updated.name == profile.name
    directory = DirectoryService(store, redis)
    assert [s.slug for s in (await directory.specialties()).items] == ["dermatologia"]
    assert (await directory.search(specialty="cardiologia")).items == []
    assert [d.id for d in (await directory.search(specialty="dermatologia")).items] == [profile.id]


async def test_concurrent_ratings_all_count(
    accounts: AccountService, store: SQLiteStore, redis: Redis
) -> None:
    """Twelve ratings at once: the profile counts all twelve and their sum."""
    profile = await accounts.register_doctor(doctor_reg(1))
    stars = [1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 5, 5]
    await asyncio.gather(
        *(
            accounts.rate_doctor(
                profile.id, s, [Put(item=Item(pk=f"RATING#{i}", sk="R"), expect="absent")]
            )
            for i, s in enumerate(stars)
        )
    )
    rated = await accounts.get_doctor(profile.id)
    assert rated.rating.count == 12
    assert rated.rating.average == round(sum(stars) / 12, 2)
    card = (await DirectoryService(store, redis).search()).items[0]
    assert card.rating == rated.rating


async def test_rating_with_failing_extra_op_changes_nothing(
    accounts: AccountService, store: SQLiteStore
) -> None:
    """When the caller's condition fails, ``ConditionFailed`` names it and the rating stays."""
    profile = await accounts.register_doctor(doctor_reg(1))
    with pytest.raises(ConditionFailed) as info:
        await accounts.rate_doctor(
            profile.id,
            5,
            [
                Put(item=Item(pk="RATING#x", sk="R"), expect="absent"),
                Check(pk="APPT#missing", sk="APPT", expect="present"),
            ],
        )
    assert info.value.index == 1
    assert (await accounts.get_doctor(profile.id)).rating.count == 0
    assert await store.get("RATING#x", "R") is None


async def test_erasure_anonymises_revokes_and_frees_identifiers(
    accounts: AccountService, store: SQLiteStore, redis: Redis
) -> None:
    """After erasure: login fails like a wrong password, tokens are refused, the doctor is out
    of the directory, the e-mail and CRM can register again, and no personal datum remains."""
    reg = doctor_reg(1)
    profile = await accounts.register_doctor(reg)
    pair = await accounts.login_doctor(
        DoctorLogin(crm=reg.crm, uf=reg.uf, password=PASSWORD), ADDRESS
    )
    principal = accounts._tokens.verify(pair.access_token)
    export = await accounts.export_user(principal)
    assert export["profile"]["email"] == reg.email
    await accounts.erase_user(principal)
    await accounts.erase_user(principal)  # idempotent
    with pytest.raises(Unauthenticated) as info:
        await accounts.login_doctor(DoctorLogin(crm=reg.crm, uf=reg.uf, password=PASSWORD), "x")
    assert info.value.code == "invalid_credentials"
    with pytest.raises(Unauthenticated):
        await accounts.check_not_revoked(principal)
    with pytest.raises(Unauthenticated):
        await accounts.refresh(pair.refresh_token)
    assert (await DirectoryService(store, redis).search()).items == []
    assert await redis.exists(keys.directory_doctor(profile.id)) == 0
    item = await store.get(f"USER#{profile.id}", "PROFILE")
    assert item is not None
    blob = msgspec.json.encode(item.data).decode()
    for datum in (reg.email, reg.crm, reg.name, "password_hash"):
        assert datum not in blob
    assert item.gsi1pk is None
    await accounts.register_doctor(reg)


# --- the limiter on its own ---------------------------------------------------------------
async def test_address_limit_spans_accounts(redis: Redis) -> None:
    """One address failing on many accounts is limited at the address limit, that address only."""
    limiter = LoginLimiter(redis, account_limit=100, address_limit=4, window_seconds=60)
    for i in range(4):
        await limiter.reserve(f"acct-{i}")
        await limiter.check_address(ADDRESS)
        await limiter.failed(ADDRESS)
    with pytest.raises(RateLimited) as info:
        await limiter.check_address(ADDRESS)
    assert 0 < info.value.retry_after <= 60
    await limiter.check_address("198.51.100.1")


async def test_successful_logins_never_fill_the_address_limit(redis: Redis) -> None:
    """An address (a proxy) carrying many good logins is never limited."""
    limiter = LoginLimiter(redis, account_limit=3, address_limit=3, window_seconds=60)
    for i in range(20):
        await limiter.reserve(f"acct-{i}")
        await limiter.check_address(ADDRESS)
        await limiter.succeeded(f"acct-{i}")
    await limiter.check_address(ADDRESS)


async def test_counters_expire_after_the_window(redis: Redis) -> None:
    """The window is fixed from the first failure: after it the account may try again."""
    limiter = LoginLimiter(redis, account_limit=2, address_limit=100, window_seconds=1)
    for _ in range(2):
        await limiter.reserve("acct")
    with pytest.raises(RateLimited) as info:
        await limiter.reserve("acct")
    assert info.value.retry_after == 1
    await asyncio.sleep(timeout(1.3))
    await limiter.reserve("acct")


async def test_counter_keys_carry_no_identifier(redis: Redis) -> None:
    """E-mails never appear in Redis key names; every counter has an expiry."""
    limiter = LoginLimiter(redis, account_limit=5, address_limit=5, window_seconds=60)
    await limiter.reserve("email:someone@example.com")
    await limiter.failed(ADDRESS)
    names = [k.decode() async for k in redis.scan_iter("*")]  # every node of a cluster
    assert len(names) == 2
    assert not any("someone" in n for n in names)
    for name in names:
        assert 0 < await redis.ttl(name) <= 60


async def test_concurrent_wrong_passwords_are_limited(accounts: AccountService) -> None:
    """Of 100 simultaneous wrong guesses at one account, only the limit reaches the check."""
    reg = patient_reg(1)
    await accounts.register_patient(reg)
    verified = 0
    real_verify = accounts._passwords.verify

    async def counting_verify(stored: str | None, password: str, admit: Any = None) -> bool:
        nonlocal verified
        verified += 1
        return await real_verify(stored, password, admit)

    accounts._passwords.verify = counting_verify  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(
            accounts.login_patient(PatientLogin(email=reg.email, password="wrong guess!"), ADDRESS)
            for _ in range(100)
        ),
        return_exceptions=True,
    )
    limited = [r for r in results if isinstance(r, RateLimited)]
    refused = [r for r in results if isinstance(r, Unauthenticated)]
    assert verified == SETTINGS.login_fail_limit_account
    assert len(refused) == SETTINGS.login_fail_limit_account
    assert len(limited) == 100 - SETTINGS.login_fail_limit_account


@pytest.fixture
def cheap_accounts(accounts: AccountService) -> AccountService:
    """Accounts whose Argon2id costs the minimum: the limit tests need hundreds of real
    verifies in flight, not OWASP's cost of each."""
    from argon2 import PasswordHasher, Type

    accounts._passwords._hasher = PasswordHasher(
        time_cost=1, memory_cost=8, parallelism=1, type=Type.ID
    )
    return accounts


async def test_concurrent_correct_logins_from_one_address_all_succeed(
    cheap_accounts: AccountService,
) -> None:
    """200 simultaneous correct logins from one address (a proxy, a NAT, a load test) all
    succeed, though the address limit is 10: logins in flight are not failures."""
    hashed = await cheap_accounts.hash_password(PASSWORD)
    regs = [patient_reg(i) for i in range(200)]
    for reg in regs:
        await cheap_accounts.register_patient(reg, password_hash=hashed)
    results = await asyncio.gather(
        *(
            cheap_accounts.login_patient(PatientLogin(email=reg.email, password=PASSWORD), ADDRESS)
            for reg in regs
        ),
        return_exceptions=True,
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert SETTINGS.login_fail_limit_address < 200


async def test_concurrent_wrong_logins_from_one_address_reach_429(
    cheap_accounts: AccountService,
) -> None:
    """60 simultaneous wrong logins on 60 accounts from one address: past the address limit
    (10) the rest are 429, and at most the limit plus the running checks are verified."""
    hashed = await cheap_accounts.hash_password(PASSWORD)
    regs = [patient_reg(i) for i in range(60)]
    for reg in regs:
        await cheap_accounts.register_patient(reg, password_hash=hashed)
    results = await asyncio.gather(
        *(
            cheap_accounts.login_patient(
                PatientLogin(email=reg.email, password="wrong guess!"), ADDRESS
            )
            for reg in regs
        ),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, Unauthenticated)]
    limited = [r for r in results if isinstance(r, RateLimited)]
    assert len(refused) + len(limited) == 60
    limit = SETTINGS.login_fail_limit_address
    assert limit <= len(refused) <= limit + SETTINGS.hash_concurrency
    assert {r.code for r in limited} == {"too_many_attempts"}
    with pytest.raises(RateLimited):  # the address stays limited, even for a good password
        await cheap_accounts.login_patient(
            PatientLogin(email=regs[0].email, password=PASSWORD), ADDRESS
        )
    other = await cheap_accounts.login_patient(
        PatientLogin(email=regs[0].email, password=PASSWORD), "198.51.100.9"
    )
    assert other.token_type == "Bearer"


async def test_unreachable_redis_is_unavailable_not_a_crash(store: SQLiteStore) -> None:
    """With Redis down, token checks answer from the store (a revocation made meanwhile is
    stored and holds); login answers from the store; search raises ``Unavailable`` (503)."""
    from engine.errors import Unavailable
    from tests.support import free_port

    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    service = AccountService(SETTINGS, store, dead, AccessTokens(SETTINGS))
    _, principal = service._tokens.issue("user-1", "patient")
    _, other = service._tokens.issue("user-2", "patient")
    try:
        await service.check_not_revoked(principal)
        await service.revoke_access_tokens("user-2")
        fresh = AccountService(SETTINGS, store, dead, AccessTokens(SETTINGS))  # another process
        await fresh.check_not_revoked(principal)
        with pytest.raises(Unauthenticated):
            await fresh.check_not_revoked(other)
        with pytest.raises(Unauthenticated):  # an unknown account, checked from the store
            await service.login_patient(
                PatientLogin(email="a@example.com", password=PASSWORD), ADDRESS
            )
        with pytest.raises(Unavailable):
            await DirectoryService(store, dead).search()
    finally:
        await dead.aclose()


async def test_login_works_while_redis_is_down_and_failures_are_still_limited(
    store: SQLiteStore,
) -> None:
    """Degraded mode: with Redis unreachable a correct password logs in (the account is in the
    store), and wrong ones still end in 429, counted in the process meanwhile."""
    from tests.support import free_port

    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    service = AccountService(SETTINGS, store, dead, AccessTokens(SETTINGS))
    reg = patient_reg(7)
    try:
        await service.register_patient(reg)
        pair = await service.login_patient(
            PatientLogin(email=reg.email, password=PASSWORD), ADDRESS
        )
        assert pair.token_type == "Bearer"
        outcomes = []
        for _ in range(SETTINGS.login_fail_limit_account + 1):
            try:
                await service.login_patient(
                    PatientLogin(email=reg.email, password="not-the-password"), ADDRESS
                )
            except (Unauthenticated, RateLimited) as exc:
                outcomes.append(type(exc).__name__)
        assert outcomes.count("Unauthenticated") == SETTINGS.login_fail_limit_account
        assert outcomes[-1] == "RateLimited"
        with pytest.raises(RateLimited):  # the account's limit holds for a good password too
            await service.login_patient(PatientLogin(email=reg.email, password=PASSWORD), ADDRESS)
    finally:
        await dead.aclose()


async def test_revocations_survive_a_flushed_redis(accounts: AccountService, redis: Redis) -> None:
    """Logout and erasure revocations hold after Redis is flushed: from the store while the
    flushed Redis is not rebuilt (no ``hydrated`` marker), and restored into it."""
    a, b = patient_reg(1), patient_reg(2)
    await accounts.register_patient(a)
    await accounts.register_patient(b)
    pa = await accounts.login_patient(PatientLogin(email=a.email, password=PASSWORD), ADDRESS)
    pb = await accounts.login_patient(PatientLogin(email=b.email, password=PASSWORD), ADDRESS)
    logged_out = accounts._tokens.verify(pa.access_token)
    erased = accounts._tokens.verify(pb.access_token)
    await accounts.logout(logged_out, pa.refresh_token)
    await accounts.erase_user(erased)
    await redis.flushdb()
    for principal in (logged_out, erased):
        with pytest.raises(Unauthenticated):
            await accounts.check_not_revoked(principal)
    assert await accounts.restore_revocations() == 2
    await redis.set(keys.hydrated(), "1")
    for principal in (logged_out, erased):
        with pytest.raises(Unauthenticated):
            await accounts.check_not_revoked(principal)


async def _live(service: AccountService) -> asyncio.Task[None]:
    task = asyncio.create_task(service.revocations.run())
    for _ in range(200):
        if service.revocations.live:
            return task
        await asyncio.sleep(0.01)
    raise AssertionError("the revocation subscription did not come up")


async def test_a_logout_on_one_replica_is_enforced_from_memory_on_another(
    store: SQLiteStore, redis: Redis
) -> None:
    """Two processes on one Redis: a logout through A reaches B's in-memory copy, and B
    refuses the token without asking Redis."""
    a = AccountService(SETTINGS, store, redis, AccessTokens(SETTINGS))
    b = AccountService(SETTINGS, store, redis, AccessTokens(SETTINGS))
    tasks = [await _live(a), await _live(b)]
    try:
        reg = patient_reg(1)
        await a.register_patient(reg)
        pair = await a.login_patient(PatientLogin(email=reg.email, password=PASSWORD), ADDRESS)
        principal = a._tokens.verify(pair.access_token)
        await b.check_not_revoked(principal)
        await a.logout(principal, pair.refresh_token)
        await redis.delete(keys.revoked_access(principal.jti))  # B may not read Redis for it
        for _ in range(int(timeout(200))):
            try:
                await b.check_not_revoked(principal)
            except Unauthenticated:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("replica B never learned of the logout")
        assert b.revocations.live
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_process_subscribing_late_loads_earlier_revocations(
    store: SQLiteStore, redis: Redis
) -> None:
    """Revocations published before a process subscribed are loaded when it does."""
    a = AccountService(SETTINGS, store, redis, AccessTokens(SETTINGS))
    reg = patient_reg(1)
    await a.register_patient(reg)
    pair = await a.login_patient(PatientLogin(email=reg.email, password=PASSWORD), ADDRESS)
    principal = a._tokens.verify(pair.access_token)
    await a.erase_user(principal)
    await redis.delete(keys.user_revoked_before(principal.user_id))
    late = AccountService(SETTINGS, store, redis, AccessTokens(SETTINGS))
    task = await _live(late)
    try:
        with pytest.raises(Unauthenticated):
            await late.check_not_revoked(principal)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_concurrent_profile_misses_share_one_store_read(
    accounts: AccountService, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fifty agenda or booking requests for one doctor (or one patient's name) arriving
    while its cached profile is being read wait on that read: one store read, not fifty.
    An id that is not a doctor is not remembered: it is read again."""
    doctor = await accounts.register_doctor(doctor_reg(1))
    patient = await accounts.register_patient(patient_reg(1))
    reads: list[str] = []
    real_get = store.get

    async def counted(pk: str, sk: str) -> Item | None:
        reads.append(pk)
        await asyncio.sleep(0.01)  # a store thread busy with a group commit
        return await real_get(pk, sk)

    monkeypatch.setattr(store, "get", counted)
    profiles = await asyncio.gather(*(accounts.get_doctor(doctor.id) for _ in range(50)))
    names = await asyncio.gather(*(accounts.patient_name(patient.id) for _ in range(50)))
    assert {p.id for p in profiles} == {doctor.id}
    assert set(names) == {patient.name}
    assert len(reads) == 2
    for _ in range(2):
        with pytest.raises(NotFound):
            await accounts.get_doctor(patient.id)
    assert len(reads) == 4


async def test_a_doctors_own_changes_are_seen_at_once_through_the_profile_cache(
    accounts: AccountService,
) -> None:
    """get_doctor is cached, yet a price change, a rating and an erasure made through this
    process show at once."""
    reg = doctor_reg(1)
    profile = await accounts.register_doctor(reg)
    assert (await accounts.get_doctor(profile.id)).price.amount_cents == reg.price_cents
    pair = await accounts.login_doctor(
        DoctorLogin(crm=reg.crm, uf=reg.uf, password=PASSWORD), ADDRESS
    )
    principal = accounts._tokens.verify(pair.access_token)
    await accounts.update_doctor(principal, DoctorPatch(price_cents=31_000))
    assert (await accounts.get_doctor(profile.id)).price.amount_cents == 31_000
    await accounts.rate_doctor(profile.id, 4)
    assert (await accounts.get_doctor(profile.id)).rating.count == 1
    await accounts.erase_user(principal)
    with pytest.raises(NotFound):
        await accounts.get_doctor(profile.id)
