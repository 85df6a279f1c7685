"""Integration fixtures: ``redis`` (database 5 of the run's real redis-server, flushed around
each test) and ``store`` (a fresh SQLite file) for the account and directory tests; for
booking, a BookingService on database 7 and a SQLite store, with a fake accounts port and an
injectable clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from engine.booking import BookingService, CreateSlots, SlotTimes
from engine.config import Settings
from engine.errors import NotFound
from engine.principal import Principal
from engine.redis_client import connect_redis
from engine.store import Item, Op, Put, SQLiteStore, StoreUnavailable
from engine.timeutil import new_id, now_ms, to_rfc3339
from tests.support import RedisClusterNodes, RedisServer

BOOKING_DB = 7


REDIS_BACKENDS = [pytest.param("redis", id="redis"), pytest.param("cluster", id="cluster")]
"""The Redis-facing fixtures run each test on one redis-server and on a real Redis Cluster,
where a key outside a script's hash tag fails loudly (CROSSSLOT) instead of passing."""


async def _redis_of(request: pytest.FixtureRequest, db: int) -> AsyncIterator[Redis]:
    if request.param == "cluster":
        nodes: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        client = connect_redis(nodes.url, cluster=True)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = connect_redis(server.url.rsplit("/", 1)[0] + f"/{db}")
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


def another_client(client: Redis) -> Redis:
    """A second, independent client of the same Redis (a second engine process)."""
    from redis.asyncio.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        node = client.get_default_node()
        return connect_redis(f"redis://{node.host}:{node.port}", cluster=True)
    kw = client.connection_pool.connection_kwargs
    return connect_redis(f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}")


@pytest.fixture(params=REDIS_BACKENDS)
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    async for client in _redis_of(request, 5):
        yield client


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = await SQLiteStore.open(tmp_path / "store.sqlite3")
    yield store
    await store.close()


class FakeAccounts:
    """The calls booking makes on accounts: a doctor's profile (price, name, specialty), a
    patient's name, and a rating applied with booking's extra ops in one store transaction
    (as AccountService.rate_doctor does)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.missing: set[str] = set()

    async def get_doctor(self, doctor_id: str) -> Any:
        if doctor_id in self.missing:
            raise NotFound("doctor not found", code="doctor_not_found")
        return SimpleNamespace(
            id=doctor_id,
            name=f"Dr. {doctor_id[:6]}",
            specialty="cardiologia",
            price=SimpleNamespace(amount_cents=25_000, currency="BRL"),
            uf="SP",
            timezone="America/Sao_Paulo",
        )

    async def patient_name(self, patient_id: str) -> str | None:
        return f"Patient {patient_id[:6]}"

    async def rate_doctor(self, doctor_id: str, stars: int, extra_ops: Sequence[Op] = ()) -> None:
        item = await self.store.get(f"USER#{doctor_id}", "RATINGS")
        data = dict(item.data) if item else {"sum": 0, "count": 0}
        data = {"sum": data["sum"] + stars, "count": data["count"] + 1}
        put = Put(
            item=Item(pk=f"USER#{doctor_id}", sk="RATINGS", data=data),
            expect=item.version if item else "absent",
        )
        await self.store.transact([*extra_ops, put])


class FlakyStore:
    """A store whose writes fail while ``failing`` is set (``transact``, ``put``,
    ``put_many``), or only the methods named in ``failing_only``."""

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.failing = False
        self.failing_only: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _check(self, method: str) -> None:
        if self.failing or method in self.failing_only:
            raise StoreUnavailable("injected store failure")

    async def transact(self, ops: Sequence[Op]) -> None:
        self._check("transact")
        await self.inner.transact(ops)

    async def put(self, item: Item, expect: Any = "any") -> None:
        self._check("put")
        await self.inner.put(item, expect)

    async def put_many(self, items: Sequence[Item]) -> None:
        self._check("put_many")
        await self.inner.put_many(items)


@dataclass
class Clock:
    """Injectable time (ms), starting at the real now."""

    now: int = field(default_factory=now_ms)

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def booking_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "meeting_secret": "m" * 48,
        "jwt_secret": "j" * 48,
        "meeting_base_url": "https://meet.example.test",
        # The request caps have their own tests (test_request_caps.py); elsewhere one
        # patient books as many slots as a test needs.
        "request_limit_per_doctor": 1000,
        "request_limit_total": 1000,
    }
    values.update(overrides)
    return Settings(**values)


def doctor(user_id: str | None = None) -> Principal:
    return Principal(
        user_id=user_id or new_id(), role="doctor", jti=new_id(), issued_at=0, expires_at=0
    )


def patient(user_id: str | None = None) -> Principal:
    return Principal(
        user_id=user_id or new_id(), role="patient", jti=new_id(), issued_at=0, expires_at=0
    )


@pytest.fixture(params=REDIS_BACKENDS)
async def booking_redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    async for client in _redis_of(request, BOOKING_DB):
        yield client


@pytest.fixture
async def booking_store(tmp_path: Path) -> AsyncIterator[FlakyStore]:
    store = await SQLiteStore.open(tmp_path / "booking.sqlite3")
    yield FlakyStore(store)
    await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def booking(booking_redis: Redis, booking_store: FlakyStore, clock: Clock) -> BookingService:
    return BookingService(
        booking_settings(), booking_store, booking_redis, FakeAccounts(booking_store), clock=clock
    )


async def slots_of(
    booking: BookingService, doc: Principal, intervals: list[tuple[int, int]]
) -> list[str]:
    """Create explicit slots (epoch-ms intervals) for ``doc``; their ids, in order."""
    body = CreateSlots(
        slots=[SlotTimes(start=to_rfc3339(s), end=to_rfc3339(e)) for s, e in intervals]
    )
    return [v.id for v in await booking.create_slots(doc, body)]


async def book(
    booking: BookingService, pat: Principal, slot: str, key: str | None = None
) -> dict[str, Any]:
    """Request ``slot`` for ``pat``; the 201 body as a dict."""
    view = await booking.request_appointment(pat, slot, key)
    result: dict[str, Any] = json.loads(msgspec.json.encode(view))
    return result


async def list_doctor(store: Any, doc: Principal) -> None:
    """Store a minimal profile of ``doc`` in the doctors index (what rebuild() walks)."""
    await store.put(
        Item(
            pk=f"USER#{doc.user_id}",
            sk="PROFILE",
            data={"id": doc.user_id},
            gsi1pk="DOCTORS",
            gsi1sk=doc.user_id,
        )
    )
