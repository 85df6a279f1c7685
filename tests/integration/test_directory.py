"""Directory search on a real redis-server: distance order and cut, rating floor and order,
exact specialty, cursor pagination, next open slot, rebuild from the store."""

from __future__ import annotations

import msgspec
import pytest
from redis.asyncio import Redis

from engine import keys
from engine.accounts import DoctorProfile, Location, Money, Rating
from engine.directory import DirectoryService
from engine.errors import Invalid
from engine.store import Item, SQLiteStore
from engine.timeutil import now_ms, to_rfc3339

CENTER = (-23.55, -46.63)
"""São Paulo; one hundredth of a degree of latitude is about 1.11 km."""


@pytest.fixture
def directory(store: SQLiteStore, redis: Redis) -> DirectoryService:
    return DirectoryService(store, redis)


def doctor(
    doctor_id: str,
    *,
    north_km: float = 0.0,
    specialty: str = "cardiologia",
    average: float | None = None,
    count: int = 0,
) -> DoctorProfile:
    return DoctorProfile(
        id=doctor_id,
        name=f"Dr {doctor_id}",
        crm="1234",
        uf="SP",
        specialty=specialty,
        price=Money(amount_cents=10_000),
        location=Location(lat=CENTER[0] + north_km / 111.2, lon=CENTER[1]),
        city="São Paulo",
        rating=Rating(average=average, count=count),
    )


async def ids(directory: DirectoryService, **query: object) -> list[str]:
    return [c.id for c in (await directory.search(**query)).items]  # type: ignore[arg-type]


async def test_location_orders_by_distance(directory: DirectoryService) -> None:
    """With lat/lon the nearest doctor comes first and ``distance_km`` is reported."""
    for doctor_id, km in [("far", 50), ("near", 1), ("mid", 10)]:
        await directory.upsert_doctor(doctor(doctor_id, north_km=km))
    page = await directory.search(lat=CENTER[0], lon=CENTER[1])
    assert [c.id for c in page.items] == ["near", "mid", "far"]
    distances = [c.distance_km for c in page.items]
    assert distances == pytest.approx([1, 10, 50], rel=0.01)


async def test_max_km_keeps_doctors_within_the_distance(directory: DirectoryService) -> None:
    """``max_km=12`` keeps the doctors at 1 and 10 km and drops the one at 50 km."""
    for doctor_id, km in [("far", 50), ("near", 1), ("mid", 10)]:
        await directory.upsert_doctor(doctor(doctor_id, north_km=km))
    assert await ids(directory, lat=CENTER[0], lon=CENTER[1], max_km=12) == ["near", "mid"]
    assert await ids(directory, lat=CENTER[0], lon=CENTER[1], max_km=0.5) == []


async def test_without_location_orders_by_rating_then_id(directory: DirectoryService) -> None:
    """Best average first, equal averages by id, unrated doctors last."""
    await directory.upsert_doctor(doctor("b", average=4.5, count=2))
    await directory.upsert_doctor(doctor("a", average=4.5, count=4))
    await directory.upsert_doctor(doctor("c", average=5.0, count=1))
    await directory.upsert_doctor(doctor("d"))
    await directory.upsert_doctor(doctor("e", average=1.0, count=1))
    assert await ids(directory) == ["c", "a", "b", "e", "d"]


async def test_min_rating_keeps_doctors_at_or_above_it(directory: DirectoryService) -> None:
    """``min_rating=4.5`` keeps 4.5 and 5.0; any floor above 0 leaves unrated doctors out."""
    await directory.upsert_doctor(doctor("top", average=5.0, count=1))
    await directory.upsert_doctor(doctor("edge", average=4.5, count=2))
    await directory.upsert_doctor(doctor("low", average=4.49, count=3))
    await directory.upsert_doctor(doctor("new"))
    assert await ids(directory, min_rating=4.5) == ["top", "edge"]
    assert "new" not in await ids(directory, min_rating=0.1)
    assert "new" in await ids(directory, min_rating=0)


async def test_min_rating_combines_with_location(directory: DirectoryService) -> None:
    """Rating floor and distance order combine: distance order among those rated enough."""
    await directory.upsert_doctor(doctor("near-low", north_km=1, average=2.0, count=1))
    await directory.upsert_doctor(doctor("mid-high", north_km=5, average=4.8, count=1))
    await directory.upsert_doctor(doctor("far-high", north_km=20, average=4.9, count=1))
    await directory.upsert_doctor(doctor("near-new", north_km=0.5))
    got = await ids(directory, lat=CENTER[0], lon=CENTER[1], min_rating=4)
    assert got == ["mid-high", "far-high"]
    got = await ids(directory, lat=CENTER[0], lon=CENTER[1], min_rating=4, max_km=10)
    assert got == ["mid-high"]


async def test_specialty_matches_exactly(directory: DirectoryService) -> None:
    """``cardio`` does not match ``cardiologia``; the slug is compared lowercased."""
    await directory.upsert_doctor(doctor("c1", specialty="cardiologia"))
    await directory.upsert_doctor(doctor("c2", specialty="cardiologia-pediatrica"))
    await directory.upsert_doctor(doctor("d1", specialty="dermatologia", north_km=1))
    assert await ids(directory, specialty="cardio") == []
    assert await ids(directory, specialty="Cardiologia") == ["c1"]
    assert await ids(directory, specialty="dermatologia", lat=CENTER[0], lon=CENTER[1]) == ["d1"]


@pytest.mark.parametrize("with_location", [False, True], ids=["by-rating", "by-distance"])
async def test_cursor_walks_every_doctor_once(
    directory: DirectoryService, with_location: bool
) -> None:
    """Pages of 4 over 11 doctors return all 11, in order, once; the last has no cursor."""
    for i in range(11):
        await directory.upsert_doctor(
            doctor(f"doc{i:02d}", north_km=i + 1, average=5 - i * 0.25, count=1)
        )
    where = {"lat": CENTER[0], "lon": CENTER[1]} if with_location else {}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await directory.search(limit=4, cursor=cursor, **where)  # type: ignore[arg-type]
        seen += [c.id for c in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert seen == [f"doc{i:02d}" for i in range(11)]


async def test_exact_page_size_has_no_next_cursor(directory: DirectoryService) -> None:
    """Four doctors with limit 4: one page and ``next_cursor`` is null."""
    for i in range(4):
        await directory.upsert_doctor(doctor(f"d{i}"))
    page = await directory.search(limit=4)
    assert len(page.items) == 4
    assert page.next_cursor is None


async def test_bad_cursors_are_422(directory: DirectoryService) -> None:
    """Garbled cursors and cursors of another search are ``invalid_cursor``."""
    for i in range(3):
        await directory.upsert_doctor(doctor(f"d{i}"))
    cursor = (await directory.search(limit=1)).next_cursor
    assert cursor is not None
    for bad in ["!!!", "e30", "bm90IGpzb24", cursor + "x"]:
        with pytest.raises(Invalid) as info:
            await directory.search(limit=1, cursor=bad)
        assert info.value.code == "invalid_cursor"
    with pytest.raises(Invalid):
        await directory.search(limit=2, cursor=cursor)
    with pytest.raises(Invalid):
        await directory.search(limit=1, cursor=cursor, specialty="cardiologia")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"max_km": 5}, "location_required"),
        ({"lat": CENTER[0], "max_km": 5}, "location_required"),
        ({"lat": CENTER[0]}, "location_required"),
        ({"lat": CENTER[0], "lon": CENTER[1], "max_km": 0}, "invalid_distance"),
        ({"lat": CENTER[0], "lon": CENTER[1], "max_km": -1}, "invalid_distance"),
        ({"lat": 95, "lon": 0}, "invalid_location"),
        ({"min_rating": 5.1}, "invalid_rating"),
        ({"min_rating": -0.1}, "invalid_rating"),
        ({"limit": 0}, "invalid_limit"),
        ({"limit": 101}, "invalid_limit"),
        ({"specialty": "Not a slug"}, "invalid_specialty"),
    ],
)
async def test_invalid_queries_are_422(
    directory: DirectoryService, query: dict[str, object], code: str
) -> None:
    """Each malformed search names what is wrong."""
    with pytest.raises(Invalid) as info:
        await directory.search(**query)  # type: ignore[arg-type]
    assert info.value.code == code


async def test_next_open_slot_is_the_first_open_slot_ahead(
    directory: DirectoryService, redis: Redis
) -> None:
    """The next open slot skips past ones and those too close to request (15 min); a doctor
    with none has no ``next_open_slot``."""
    await directory.upsert_doctor(doctor("busy"))
    await directory.upsert_doctor(doctor("idle"))
    now = now_ms()
    closing, soon, later = now + 10 * 60_000, now + 3_600_000, now + 7_200_000
    await redis.zadd(
        keys.doctor_open_slots("busy"),
        {"past": now - 60_000, "closing": closing, "s1": soon, "s2": later},
    )
    cards = {c.id: c for c in (await directory.search()).items}
    assert cards["busy"].next_open_slot == to_rfc3339(soon)
    assert cards["idle"].next_open_slot is msgspec.UNSET
    assert "next_open_slot" not in msgspec.to_builtins(cards["idle"])


async def test_update_rating_reorders_and_ignores_removed_doctors(
    directory: DirectoryService, redis: Redis
) -> None:
    """A new average moves the doctor up; rating a removed doctor does not list it again."""
    await directory.upsert_doctor(doctor("a", average=3.0, count=1))
    await directory.upsert_doctor(doctor("b", average=4.0, count=1))
    await directory.update_rating("a", 4.5, 2)
    assert await ids(directory) == ["a", "b"]
    await directory.remove_doctor("a")
    await directory.update_rating("a", 5.0, 3)
    assert await ids(directory) == ["b"]
    assert await redis.exists(keys.directory_doctor("a")) == 0


async def test_specialties_count_doctors_and_follow_moves(directory: DirectoryService) -> None:
    """Counts per slug; a moved or removed doctor no longer counts, empty slugs disappear."""
    await directory.upsert_doctor(doctor("a", specialty="cardiologia"))
    await directory.upsert_doctor(doctor("b", specialty="cardiologia"))
    await directory.upsert_doctor(doctor("c", specialty="dermatologia"))
    listed = {s.slug: s.doctors for s in (await directory.specialties()).items}
    assert listed == {"cardiologia": 2, "dermatologia": 1}
    await directory.upsert_doctor(doctor("c", specialty="cardiologia"))
    await directory.remove_doctor("a")
    listed = {s.slug: s.doctors for s in (await directory.specialties()).items}
    assert listed == {"cardiologia": 2}


async def test_rebuild_restores_the_directory_from_the_store(
    directory: DirectoryService, store: SQLiteStore, redis: Redis
) -> None:
    """After a flush, rebuild lists the stored doctors (not erased ones) and drops strays."""
    for i, (spec, erased) in enumerate([("cardiologia", False), ("pediatria", False), ("x", True)]):
        data = {
            "id": f"doc{i}",
            "role": "doctor",
            "name": f"Dr {i}",
            "crm": "1234",
            "uf": "SP",
            "specialty": spec,
            "price_cents": 100,
            "lat": CENTER[0],
            "lon": CENTER[1] + i / 100,
            "city": None,
            "rating_sum": 9 if i == 1 else 0,
            "rating_count": 2 if i == 1 else 0,
            "created_at": 0,
            "erased": erased,
        }
        await store.put(
            Item(pk=f"USER#doc{i}", sk="PROFILE", data=data, gsi1pk="DOCTORS", gsi1sk=f"doc{i}")
        )
    await directory.upsert_doctor(doctor("stray", specialty="ortopedia"))
    assert await directory.rebuild() == 2
    assert await ids(directory) == ["doc1", "doc0"]
    assert [s.slug for s in (await directory.specialties()).items] == ["cardiologia", "pediatria"]
    card = (await directory.search(specialty="pediatria")).items[0]
    assert card.rating == Rating(average=4.5, count=2)
    assert await redis.exists(keys.directory_doctor("stray")) == 0
    assert await ids(directory, lat=CENTER[0], lon=CENTER[1]) == ["doc0", "doc1"]


async def test_a_search_page_is_a_few_round_trips(
    directory: DirectoryService, redis: Redis
) -> None:
    """A page of 20 doctors costs at most three Redis round trips, not one per doctor."""
    for i in range(30):
        await directory.upsert_doctor(doctor(f"d{i:02d}", north_km=i, average=4.0, count=1))
    calls = 0
    original = redis.execute_command

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return await original(*args, **kwargs)

    redis.execute_command = counting  # type: ignore[method-assign]
    original_pipeline = redis.pipeline

    def counting_pipeline(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return original_pipeline(*args, **kwargs)  # type: ignore[arg-type]

    redis.pipeline = counting_pipeline  # type: ignore[method-assign]
    try:
        page = await directory.search(lat=CENTER[0], lon=CENTER[1], min_rating=3, limit=20)
    finally:
        del redis.execute_command
        del redis.pipeline
    assert len(page.items) == 20
    assert 2 <= calls <= 3


async def test_rating_floor_with_location_finds_rated_doctors_beyond_the_first_batch(
    directory: DirectoryService,
) -> None:
    """150 unrated doctors nearer than the only rated ones: the rated ones are still found,
    nearest first, and the page continues with a cursor."""
    for i in range(150):
        await directory.upsert_doctor(doctor(f"near-{i:03d}", north_km=0.01 * (i + 1)))
    for doctor_id, km in [("rated-c", 30), ("rated-a", 10), ("rated-b", 20)]:
        await directory.upsert_doctor(doctor(doctor_id, north_km=km, average=4.8, count=3))
    query = {"lat": CENTER[0], "lon": CENTER[1], "min_rating": 4.0, "limit": 2}
    first = await directory.search(**query)  # type: ignore[arg-type]
    assert [c.id for c in first.items] == ["rated-a", "rated-b"]
    assert first.next_cursor is not None
    rest = await directory.search(**query, cursor=first.next_cursor)  # type: ignore[arg-type]
    assert [c.id for c in rest.items] == ["rated-c"]
    assert rest.next_cursor is None
