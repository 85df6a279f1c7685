"""Finding 6 (issue 14): anyone could lock a doctor out, CRM and UF being public. Device tokens
keep a device that logged in before out of the unknown clients' gate, the gate is a growing
delay instead of a lock, and IPv6 addresses count by /64 (AccountService and LoginLimiter on
SQLite and a real redis-server, single node and cluster; and with Redis down)."""

from __future__ import annotations

import asyncio
import os
import time

import pyotp
import pytest
from redis.asyncio import Redis

from engine.accounts import (
    AccessTokens,
    AccountService,
    DoctorLogin,
    MfaChallenge,
    MfaLogin,
    TokenPair,
)
from engine.accounts._ratelimit import LoginLimiter
from engine.config import Settings
from engine.errors import RateLimited, Unauthenticated
from engine.records import LocalKeyWrapper, Sealer
from engine.redis_client import connect_redis
from engine.store import SQLiteStore
from tests.integration.test_accounts import PASSWORD, doctor_reg
from tests.support import free_port, timeout

OWNER = "198.51.100.20"
ATTACKER = "203.0.113.66"
SETTINGS = Settings(
    jwt_secret="k" * 64,
    login_fail_limit_account=5,
    login_fail_limit_address=50,
    login_fail_window_seconds=900,
    hash_concurrency=2,
)


def _service(store: SQLiteStore, redis: Redis) -> AccountService:
    wrapper = LocalKeyWrapper(os.urandom(32))
    return AccountService(
        SETTINGS, store, redis, AccessTokens(SETTINGS), sealer=Sealer(lambda: wrapper)
    )


async def _guess(service: AccountService, crm: str, times: int, address: str) -> list[str]:
    outcomes = []
    for _ in range(times):
        try:
            await service.login_doctor(
                DoctorLogin(crm=crm, uf="SP", password="guess guess"), address
            )
        except (Unauthenticated, RateLimited) as exc:
            outcomes.append(type(exc).__name__)
    return outcomes


async def _device_lockout(service: AccountService) -> None:
    await service.register_doctor(doctor_reg(61, crm="616161"))
    first = await service.login_doctor(DoctorLogin(crm="616161", uf="SP", password=PASSWORD), OWNER)
    assert isinstance(first, TokenPair)
    assert isinstance(first.device_token, str)
    outcomes = await _guess(service, "616161", 20, ATTACKER)
    assert outcomes == ["Unauthenticated"] * 5 + ["RateLimited"] * 15
    # The doctor's device logged in before: its own gate, untouched by the guesses.
    again = await service.login_doctor(
        DoctorLogin(crm="616161", uf="SP", password=PASSWORD, device_token=first.device_token),
        OWNER,
    )
    assert isinstance(again, TokenPair)
    assert isinstance(again.device_token, str)
    # An unknown client (no token, or a token of another account) waits, even with the
    # right password.
    other = await service.register_doctor(doctor_reg(62, crm="626262"))
    foreign = service.devices.issue(other.id)
    for token in (None, foreign, "d1.forged.9999999999.AAAA"):
        with pytest.raises(RateLimited) as info:
            await service.login_doctor(
                DoctorLogin(crm="616161", uf="SP", password=PASSWORD, device_token=token), OWNER
            )
        assert 0 < info.value.retry_after <= 30


async def test_guessing_at_a_public_crm_does_not_lock_the_doctor_out_of_a_known_device(
    store: SQLiteStore, redis: Redis
) -> None:
    """A doctor logs in once; 20 wrong guesses from elsewhere: 5 are checked, 15 wait (429);
    the doctor's next login with the device token still succeeds, while a client without a
    valid token of this account (none, another doctor's, forged) waits."""
    await _device_lockout(_service(store, redis))


async def test_a_known_device_is_not_locked_out_while_redis_is_down(store: SQLiteStore) -> None:
    """Degraded mode: the same with the gates counted in the process (device tokens need no
    Redis)."""
    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    try:
        await _device_lockout(_service(store, dead))
    finally:
        await dead.aclose()


async def test_a_device_has_its_own_limit(store: SQLiteStore, redis: Redis) -> None:
    """Wrong passwords sent with a device token are limited in that device's gate: 5 checked,
    then 429 for it, while the account's unknown-clients gate is still open."""
    service = _service(store, redis)
    await service.register_doctor(doctor_reg(63, crm="636363"))
    first = await service.login_doctor(DoctorLogin(crm="636363", uf="SP", password=PASSWORD), OWNER)
    assert isinstance(first, TokenPair)
    assert isinstance(first.device_token, str)
    bad = DoctorLogin(crm="636363", uf="SP", password="nope nope", device_token=first.device_token)
    outcomes = []
    for _ in range(6):
        try:
            await service.login_doctor(bad, OWNER)
        except (Unauthenticated, RateLimited) as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes == ["Unauthenticated"] * 5 + ["RateLimited"]
    fresh = await service.login_doctor(DoctorLogin(crm="636363", uf="SP", password=PASSWORD), OWNER)
    assert isinstance(fresh, TokenPair)


async def test_the_code_step_of_a_known_device_is_not_locked_out(
    store: SQLiteStore, redis: Redis
) -> None:
    """With 2FA: guesses at the password lock the unknown clients' gate; the doctor's known
    device gets a challenge, and the code step (limited in the same device gate) gives
    tokens and a renewed device token for that device."""
    service = _service(store, redis)
    await service.register_doctor(doctor_reg(64, crm="646464"))
    first = await service.login_doctor(DoctorLogin(crm="646464", uf="SP", password=PASSWORD), OWNER)
    assert isinstance(first, TokenPair)
    principal = service._tokens.verify(first.access_token)
    enrolment = await service.security.enrol_totp(principal, PASSWORD, OWNER)
    totp = pyotp.TOTP(enrolment.secret)
    await service.security.activate_totp(principal, totp.now(), OWNER)
    assert "RateLimited" in await _guess(service, "646464", 8, ATTACKER)
    challenge = await service.login_doctor(
        DoctorLogin(crm="646464", uf="SP", password=PASSWORD, device_token=first.device_token),
        OWNER,
    )
    assert isinstance(challenge, MfaChallenge)
    code = totp.at(time.time() + 30)  # the activation spent this step's code
    pair = await service.security.complete_mfa(
        MfaLogin(mfa_token=challenge.mfa_token, code=code), OWNER
    )
    device = service.devices.device(first.device_token, principal.user_id)
    assert isinstance(pair.device_token, str)
    assert device is not None
    assert service.devices.device(pair.device_token, principal.user_id) == device


async def test_the_wait_grows_and_then_the_right_password_works(redis: Redis) -> None:
    """No hard lock: past the limit the gate closes for the first delay, opens again, and
    each attempt let through doubles the next wait; 50 refused attempts change nothing."""
    limiter = LoginLimiter(
        redis, account_limit=2, address_limit=100, window_seconds=60, delay_seconds=0.4
    )
    await limiter.reserve("acct")
    await limiter.reserve("acct")  # the limit-th attempt: the gate closes for 0.4 s
    for _ in range(50):
        with pytest.raises(RateLimited) as info:
            await limiter.reserve("acct")
    assert info.value.retry_after == 1
    await asyncio.sleep(timeout(0.5))
    await limiter.reserve("acct")  # open again: let through, the gate closes for 0.8 s
    await asyncio.sleep(0.5)
    with pytest.raises(RateLimited):
        await limiter.reserve("acct")
    await asyncio.sleep(timeout(0.4))
    await limiter.reserve("acct")
    await limiter.succeeded("acct")
    await limiter.reserve("acct")
    await limiter.reserve("acct")


async def test_one_ipv6_slash_64_is_one_address_for_the_limit(redis: Redis) -> None:
    """Failures from 4 addresses of one /64 fill its limit of 4: a fifth address of that
    /64 is refused, another /64 is not."""
    limiter = LoginLimiter(redis, account_limit=100, address_limit=4, window_seconds=60)
    for i in range(1, 5):
        await limiter.check_address(f"2001:db8:0:1::{i:x}")
        await limiter.failed(f"2001:db8:0:1:{i:x}::1")
    with pytest.raises(RateLimited):
        await limiter.check_address("2001:db8:0:1:ffff:ffff:ffff:ffff")
    await limiter.check_address("2001:db8:0:2::1")
