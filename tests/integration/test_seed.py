"""Seeding: accounts that log in with the seeded password, doctors listed with slots, a
credentials file only its owner can read, a demo cast with its appointments, and a refusal
in production."""

from __future__ import annotations

import base64
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine import seed
from engine.accounts import DoctorLogin, PatientLogin
from engine.config import load_settings
from engine.runtime import Engine
from gateway.cli import main
from tests.support import RedisServer

ADDRESS = "203.0.113.9"


@pytest.fixture
async def engine(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Engine]:
    settings = load_settings(
        {
            "HEALTHMED_ENV": "test",
            "HEALTHMED_DATA_DIR": str(tmp_path),
            "HEALTHMED_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/9",
        }
    )
    engine = await Engine.start(settings, background=False)
    await engine.redis.flushdb()
    yield engine
    await engine.redis.flushdb()
    await engine.close()


async def test_seeded_accounts_log_in_and_doctors_have_slots(
    engine: Engine, tmp_path: Path
) -> None:
    """Every seeded doctor and patient logs in with the seeded password; every doctor is in
    the directory with two days of open slots; the credentials file is mode 0600."""
    creds = await seed.seed(engine, doctors=3, patients=4, days=2)
    assert len(creds.doctors) == 3
    assert len(creds.patients) == 4
    assert creds.hot_doctor == creds.doctors[0].id
    for d in creds.doctors:
        body = DoctorLogin(crm=d.crm, uf=d.uf, password=creds.password)
        assert (await engine.accounts.login_doctor(body, ADDRESS)).access_token
        agenda = await engine.booking.agenda(d.id, None, None)
        assert len(agenda.slots) == 20  # 08:00-18:00, 50 + 10 minutes, two days
        assert {s.status for s in agenda.slots} == {"open"}
    assert creds.slots == 60
    for p in creds.patients:
        body_p = PatientLogin(email=p.email, password=creds.password)
        assert (await engine.accounts.login_patient(body_p, ADDRESS)).access_token
    listed = {d.id for d in (await engine.directory.search(limit=100)).items}
    assert listed == {d.id for d in creds.doctors}
    path = tmp_path / "creds" / "c.json"
    seed.write_credentials(path, creds)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert seed.read_credentials(path) == creds


async def test_seeding_twice_adds_new_accounts(engine: Engine) -> None:
    """A second run on the same store creates new, distinct accounts (no clash)."""
    first = await seed.seed(engine, doctors=2, patients=2, days=0)
    second = await seed.seed(engine, doctors=2, patients=2, days=0)
    emails = {p.email for p in first.patients + second.patients}
    assert len(emails) == 4
    assert second.slots == 0


async def test_seeded_tokens_work_and_past_appointments_can_be_rated(engine: Engine) -> None:
    """Seeded token pairs are valid; ``past`` patients hold an ended, confirmed appointment
    that they can rate once; the others hold none."""
    creds = await seed.seed(engine, doctors=2, patients=3, days=1, past=2)
    rated = [p for p in creds.patients if p.past_appointment]
    assert len(rated) == 2
    for p in creds.patients:
        principal = engine.tokens.verify(p.access_token)
        assert principal.user_id == p.id
        assert (await engine.accounts.refresh(p.refresh_token)).access_token
    for p in rated:
        assert p.past_appointment is not None
        principal = engine.tokens.verify(p.access_token)
        view = await engine.booking.get_appointment(principal, p.past_appointment)
        assert view.status == "confirmed"
        await engine.booking.rate(principal, p.past_appointment, 5, None)
    doctor = engine.tokens.verify(creds.doctors[0].access_token)
    assert doctor.role == "doctor"


async def test_demo_cast_has_its_appointments_and_a_share(engine: Engine) -> None:
    """The demo seeds a confirmed and a requested appointment and a share; a second run
    finds the cast and changes nothing."""
    cast = await seed.demo(engine)
    assert cast.created
    patient = next(x for x in cast.logins if x.role == "patient")
    pair = await engine.accounts.login_patient(
        PatientLogin(email=patient.login, password=cast.password), ADDRESS
    )
    principal = engine.tokens.verify(pair.access_token)
    page = await engine.booking.list_appointments(principal)
    assert [a.status for a in page.items] == ["confirmed"]
    shares = await engine.records.list_shares(principal)
    assert len(shares.items) == 1
    again = await seed.demo(engine)
    assert not again.created
    assert again.logins == cast.logins


async def test_seed_refuses_production(engine: Engine) -> None:
    """The engine call refuses HEALTHMED_ENV=production."""
    with pytest.raises(seed.ProductionRefused):
        seed.refuse_production("production")
    seed.refuse_production(engine.settings.env)


def test_seed_command_refuses_production(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``healthmed seed`` with HEALTHMED_ENV=production exits 2 and writes nothing."""
    monkeypatch.setenv("HEALTHMED_ENV", "production")
    monkeypatch.setenv("HEALTHMED_DATA_DIR", str(tmp_path))
    # Secrets that production accepts (random, distinct), so only the seed's own refusal stops it.
    for name in ("HEALTHMED_JWT_SECRET", "HEALTHMED_MEETING_SECRET"):
        monkeypatch.setenv(name, secrets.token_urlsafe(48))
    monkeypatch.setenv(
        "HEALTHMED_MASTER_KEY", base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    )
    assert main(["seed", "--doctors", "1"]) == 2
    assert "production" in capsys.readouterr().err
    assert not (tmp_path / "seed-credentials.json").exists()
