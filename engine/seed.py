"""Seed data for development, demos and load tests; refused in production.

``seed(engine, doctors=N, patients=M)`` registers N doctors across specialties and Brazilian
cities, each with a fortnight of slots published by weekly rule, and M patients, through the
engine's own services (validation, uniqueness guards, the directory, Redis and the store stay
consistent). It is fast because every seeded account shares one password and so one Argon2id
hash, computed once (``AccountService.hash_password``), instead of one hash per account.
Identifiers are random per run, so seeding a store that already holds earlier runs works.
The result (``Credentials``) is what a load test logs in with: identifiers, the password,
and a token pair per account (so that thousands of simulated users need not each pay an
Argon2id verify to start; a load test still logs some of them in with the password).
``past=K`` also gives K patients a confirmed appointment that has already ended (booked and
accepted through the booking service on a clock set 30 days back), for them to rate.
``write_credentials`` saves it all with mode 0600.

``demo(engine)`` seeds a small, fixed cast for a walkthrough: doctors in several specialties
and cities with a fortnight of slots, a few patients, one confirmed and one requested
appointment and a shared health record. Running it twice reports the existing cast.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import time
from typing import TYPE_CHECKING, TypeVar

import msgspec

from engine.accounts import DoctorRegistration, Location, PatientRegistration
from engine.accounts.validators import cpf_check_digits
from engine.booking import CreateSlots, WeeklyRule
from engine.errors import Conflict
from engine.principal import Principal, Role

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from pathlib import Path

    from engine.runtime import Engine

SEED_PASSWORD = "seeded password 2026"
"""The password of every seeded account (development and test data only)."""

CITIES = [
    ("São Paulo", "SP", -23.5505, -46.6333),
    ("Rio de Janeiro", "RJ", -22.9068, -43.1729),
    ("Belo Horizonte", "MG", -19.9167, -43.9345),
    ("Brasília", "DF", -15.7939, -47.8828),
    ("Salvador", "BA", -12.9714, -38.5014),
    ("Curitiba", "PR", -25.4284, -49.2733),
    ("Porto Alegre", "RS", -30.0346, -51.2177),
    ("Recife", "PE", -8.0476, -34.8770),
    ("Fortaleza", "CE", -3.7319, -38.5267),
    ("Manaus", "AM", -3.1190, -60.0217),
]
SPECIALTIES = [
    "cardiologia",
    "dermatologia",
    "pediatria",
    "ortopedia",
    "psiquiatria",
    "ginecologia",
    "neurologia",
    "oftalmologia",
    "endocrinologia",
    "clinica-geral",
]
T = TypeVar("T")
TIMEZONE = "America/Sao_Paulo"
CONCURRENCY = 32
"""Registrations in flight at once: enough to keep the store's thread busy."""


class ProductionRefused(RuntimeError):
    """Seeding was asked for with ``HEALTHMED_ENV=production``."""


class SeededDoctor(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    access_token: str
    refresh_token: str
    crm: str
    uf: str
    email: str
    specialty: str
    city: str
    lat: float
    lon: float


class SeededPatient(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    cpf: str
    access_token: str
    refresh_token: str
    past_appointment: str | None = None
    """A confirmed appointment of this patient that has ended: it can be rated once."""


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    """Who a load test logs in as; ``hot_doctor`` is the one everyone wants."""

    password: str
    doctors: list[SeededDoctor]
    patients: list[SeededPatient]
    hot_doctor: str | None
    slots: int


def refuse_production(env: str) -> None:
    if env == "production":
        raise ProductionRefused("healthmed seed refuses to run with HEALTHMED_ENV=production")


def _cpf() -> str:
    base = f"{secrets.randbelow(10**9):09d}"
    return base + cpf_check_digits(base)


def _crm() -> str:
    return f"{10_000_000 + secrets.randbelow(90_000_000)}"


async def _unique(make: Callable[[], Awaitable[T]], attempts: int = 8) -> T:
    """Retry ``make`` with fresh random identifiers while one is already taken."""
    for attempt in range(attempts):
        try:
            return await make()
        except Conflict as exc:
            if exc.code != "duplicate_account" or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _principal(user_id: str, role: Role) -> Principal:
    now = int(time.time())
    return Principal(user_id=user_id, role=role, jti="seed", issued_at=now, expires_at=now + 600)


def _fortnight(days: int, start: str = "08:00", end: str = "18:00") -> CreateSlots:
    first = dt.date.today() + dt.timedelta(days=1)
    return CreateSlots(
        rule=WeeklyRule(
            from_=first.isoformat(),
            to=(first + dt.timedelta(days=days - 1)).isoformat(),
            weekdays=[1, 2, 3, 4, 5, 6, 7],
            start_time=start,
            end_time=end,
            timezone=TIMEZONE,
        )
    )


async def _bounded(coros: Sequence[Awaitable[None]]) -> None:
    permits = asyncio.Semaphore(CONCURRENCY)

    async def one(coro: Awaitable[None]) -> None:
        async with permits:
            await coro

    await asyncio.gather(*(one(c) for c in coros))


async def seed(
    engine: Engine,
    *,
    doctors: int,
    patients: int,
    days: int = 14,
    past: int = 0,
    password: str = SEED_PASSWORD,
) -> Credentials:
    """Register ``doctors`` doctors (with ``days`` days of slots each) and ``patients``
    patients, ``past`` of them with an ended appointment; the first doctor is the hot one.
    Refused in production."""
    refuse_production(engine.settings.env)
    hashed = await engine.accounts.hash_password(password)
    tag = secrets.token_hex(4)
    seeded_doctors: list[SeededDoctor | None] = [None] * doctors
    seeded_patients: list[SeededPatient | None] = [None] * patients
    slots = 0

    async def doctor(i: int) -> None:
        nonlocal slots
        city, uf, lat, lon = CITIES[i % len(CITIES)]
        specialty = SPECIALTIES[(i // len(CITIES)) % len(SPECIALTIES)]
        jitter = (secrets.randbelow(2000) - 1000) / 20_000  # within ~5 km of the centre

        async def register() -> SeededDoctor:
            reg = DoctorRegistration(
                name=f"Dra. Seed {i}",
                crm=_crm(),
                uf=uf,
                email=f"seed-{tag}-d{i}@example.com",
                password=password,
                specialty=specialty,
                price_cents=15_000 + 1_000 * (i % 20),
                location=Location(lat=lat + jitter, lon=lon + jitter),
                city=city,
            )
            profile = await engine.accounts.register_doctor(reg, password_hash=hashed)
            pair = await engine.accounts.issue_without_password(profile.id, "doctor")
            return SeededDoctor(
                id=profile.id,
                access_token=pair.access_token,
                refresh_token=pair.refresh_token,
                crm=reg.crm,
                uf=uf,
                email=reg.email,
                specialty=specialty,
                city=city,
                lat=reg.location.lat,
                lon=reg.location.lon,
            )

        seeded = await _unique(register)
        if days > 0:
            made = await engine.booking.create_slots(
                _principal(seeded.id, "doctor"), _fortnight(days)
            )
            slots += len(made)
        seeded_doctors[i] = seeded

    async def patient(i: int) -> None:
        async def register() -> SeededPatient:
            reg = PatientRegistration(
                name=f"Paciente Seed {i}",
                email=f"seed-{tag}-p{i}@example.com",
                cpf=_cpf(),
                password=password,
            )
            profile = await engine.accounts.register_patient(reg, password_hash=hashed)
            pair = await engine.accounts.issue_without_password(profile.id, "patient")
            return SeededPatient(
                id=profile.id,
                email=reg.email,
                cpf=reg.cpf,
                access_token=pair.access_token,
                refresh_token=pair.refresh_token,
            )

        seeded_patients[i] = await _unique(register)

    await _bounded([doctor(i) for i in range(doctors)] + [patient(i) for i in range(patients)])
    done_doctors = [d for d in seeded_doctors if d is not None]
    done_patients = [p for p in seeded_patients if p is not None]
    if past and done_doctors:
        done_patients = await _past_appointments(engine, done_doctors, done_patients, past)
    return Credentials(
        password=password,
        doctors=done_doctors,
        patients=done_patients,
        hot_doctor=done_doctors[0].id if done_doctors else None,
        slots=slots,
    )


PAST_DAYS = 30


async def _past_appointments(
    engine: Engine, doctors: list[SeededDoctor], patients: list[SeededPatient], count: int
) -> list[SeededPatient]:
    """Give the first ``count`` patients one ended, confirmed appointment each: slots are
    published, requested and accepted through the booking service on a clock set
    ``PAST_DAYS`` back, so every rule (no past slot, decision lead) holds as it did then."""
    count = min(count, len(patients))
    booking = engine.booking
    real_clock = booking.ctx.clock
    offset = PAST_DAYS * 86_400_000
    booking.ctx.clock = lambda: real_clock() - offset
    try:
        per_doctor = -(-count // len(doctors))
        days = max(1, -(-per_doctor // 10))  # ten slots a day, 08:00-18:00
        first = dt.date.today() - dt.timedelta(days=PAST_DAYS - 1)
        rule = CreateSlots(
            rule=WeeklyRule(
                from_=first.isoformat(),
                to=(first + dt.timedelta(days=days - 1)).isoformat(),
                weekdays=[1, 2, 3, 4, 5, 6, 7],
                start_time="08:00",
                end_time="18:00",
                timezone=TIMEZONE,
            )
        )
        free: list[tuple[str, str]] = []
        for d in doctors[: -(-count // per_doctor)]:
            made = await booking.create_slots(_principal(d.id, "doctor"), rule)
            free += [(d.id, slot.id) for slot in made[:per_doctor]]
        booked: dict[str, str] = {}

        async def one(patient: SeededPatient, doctor_id: str, slot_id: str) -> None:
            view = await booking.request_appointment(_principal(patient.id, "patient"), slot_id)
            appointment_id = view.id
            await booking.accept(_principal(doctor_id, "doctor"), appointment_id)
            booked[patient.id] = appointment_id

        await _bounded([one(p, d, s) for p, (d, s) in zip(patients[:count], free, strict=False)])
    finally:
        booking.ctx.clock = real_clock
    return [
        msgspec.structs.replace(p, past_appointment=booked.get(p.id)) if p.id in booked else p
        for p in patients
    ]


def write_credentials(path: Path, credentials: Credentials) -> None:
    """Save ``credentials`` as JSON, readable by the owner only (they hold a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.format(msgspec.json.encode(credentials)))
    os.replace(tmp, path)


def read_credentials(path: Path) -> Credentials:
    return msgspec.json.decode(path.read_bytes(), type=Credentials)


# --- the demo cast --------------------------------------------------------------------------
DEMO_DOCTORS = [
    ("Dra. Ana Cardoso", "cardiologia", 0),
    ("Dr. Bruno Lima", "dermatologia", 1),
    ("Dra. Carla Souza", "pediatria", 2),
    ("Dr. Diego Alves", "ortopedia", 0),
    ("Dra. Elisa Rocha", "psiquiatria", 5),
    ("Dr. Felipe Nunes", "clinica-geral", 7),
]
DEMO_PATIENTS = ["Gabriela Martins", "Heitor Ribeiro", "Isabela Costa"]
DEMO_PASSWORD = "demo password 2026"


class DemoLogin(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    name: str
    login: str
    """``CRM/UF`` for doctors, the e-mail for patients."""
    detail: str


class Demo(msgspec.Struct, frozen=True, kw_only=True):
    password: str
    logins: list[DemoLogin]
    created: bool
    """False when the cast was already there (the logins are the same)."""


def _demo_doctor_login(n: int) -> tuple[str, str, str]:
    _, _, city_index = DEMO_DOCTORS[n]
    return f"{1001 + n:06d}", CITIES[city_index][1], f"demo-doctor{n + 1}@example.com"


def _demo_patient_cpf(n: int) -> str:
    base = f"{123456780 + n:09d}"
    return base + cpf_check_digits(base)


def _demo_logins() -> list[DemoLogin]:
    logins = []
    for n, (name, specialty, city_index) in enumerate(DEMO_DOCTORS):
        crm, uf, _ = _demo_doctor_login(n)
        detail = f"{specialty}, {CITIES[city_index][0]}"
        logins.append(DemoLogin(role="doctor", name=name, login=f"{crm}/{uf}", detail=detail))
    for n, name in enumerate(DEMO_PATIENTS):
        detail = ["one confirmed appointment and a shared record", "one request waiting", ""][n]
        email = f"demo-patient{n + 1}@example.com"
        logins.append(DemoLogin(role="patient", name=name, login=email, detail=detail))
    return logins


async def _text_record() -> AsyncIterator[bytes]:
    yield b"Hemograma completo\nHemoglobina: 14.1 g/dL\nLeucocitos: 6.800 /mm3\n"


async def demo(engine: Engine) -> Demo:
    """Seed the demo cast (or find it there already). Refused in production."""
    refuse_production(engine.settings.env)
    hashed = await engine.accounts.hash_password(DEMO_PASSWORD)
    doctor_ids: list[str] = []
    for n, (name, specialty, city_index) in enumerate(DEMO_DOCTORS):
        crm, uf, email = _demo_doctor_login(n)
        city, _, lat, lon = CITIES[city_index]
        reg = DoctorRegistration(
            name=name,
            crm=crm,
            uf=uf,
            email=email,
            password=DEMO_PASSWORD,
            specialty=specialty,
            price_cents=18_000 + 2_000 * n,
            location=Location(lat=lat + n / 500, lon=lon - n / 500),
            city=city,
        )
        try:
            profile = await engine.accounts.register_doctor(reg, password_hash=hashed)
        except Conflict as exc:
            if exc.code == "duplicate_account" and n == 0:
                return Demo(password=DEMO_PASSWORD, logins=_demo_logins(), created=False)
            raise
        doctor_ids.append(profile.id)
        await engine.booking.create_slots(_principal(profile.id, "doctor"), _fortnight(14))
    patient_ids = []
    for n, name in enumerate(DEMO_PATIENTS):
        reg_p = PatientRegistration(
            name=name,
            email=f"demo-patient{n + 1}@example.com",
            cpf=_demo_patient_cpf(n),
            password=DEMO_PASSWORD,
        )
        patient_ids.append((await engine.accounts.register_patient(reg_p, password_hash=hashed)).id)
    await _demo_appointments(engine, doctor_ids, patient_ids)
    return Demo(password=DEMO_PASSWORD, logins=_demo_logins(), created=True)


async def _demo_appointments(engine: Engine, doctor_ids: list[str], patient_ids: list[str]) -> None:
    """The first patient: an appointment with the first doctor, accepted, and a record shared
    with that doctor for 30 days; the second patient: a request waiting for the second."""
    first, second = patient_ids[0], patient_ids[1]
    agenda = await engine.booking.agenda(doctor_ids[0], None, None)
    confirmed = await engine.booking.request_appointment(
        _principal(first, "patient"), agenda.slots[2].id
    )
    await engine.booking.accept(_principal(doctor_ids[0], "doctor"), confirmed.id)
    agenda = await engine.booking.agenda(doctor_ids[1], None, None)
    await engine.booking.request_appointment(_principal(second, "patient"), agenda.slots[4].id)
    record = await engine.records.upload(
        _principal(first, "patient"),
        _text_record(),
        kind="exam",
        group="check-up-2026",
        title="Hemograma",
        filename="hemograma.txt",
    )
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    await engine.records.create_share(
        _principal(first, "patient"),
        doctor_id=doctor_ids[0],
        record_ids=[record.id],
        groups=None,
        expires_at=until.isoformat().replace("+00:00", "Z"),
    )


__all__ = [
    "SEED_PASSWORD",
    "Credentials",
    "Demo",
    "ProductionRefused",
    "SeededDoctor",
    "SeededPatient",
    "demo",
    "read_credentials",
    "refuse_production",
    "seed",
    "write_credentials",
]
