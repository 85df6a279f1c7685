"""A doctor's specialty moves atomically and empty specialties leave the list (issue 14,
finding 10), on a real redis-server."""

from __future__ import annotations

import asyncio

import msgspec
from redis.asyncio import Redis

from engine import keys
from engine.directory import DirectoryService
from tests.integration.test_directory import directory as directory
from tests.integration.test_directory import doctor


async def test_racing_specialty_changes_leave_one_listing(
    directory: DirectoryService,
    redis: Redis,
) -> None:
    """Twenty edits of one doctor to twenty specialties at once: the doctor ends in exactly
    one specialty's index, the one its card names, and the other nineteen are gone."""
    await directory.upsert_doctor(doctor("d1", specialty="s00"))
    specs = [f"s{i:02d}" for i in range(1, 21)]
    await asyncio.gather(*(directory.upsert_doctor(doctor("d1", specialty=s)) for s in specs))
    card = await redis.hget(keys.directory_doctor("d1"), "specialty")
    assert card is not None
    listed = [s for s in ["s00", *specs] if await redis.zscore(keys.directory_geo(s), "d1")]
    assert listed == [card.decode()]
    slugs = {m.decode() for m in await redis.zrange(keys.directory_specialties(), 0, -1)}
    assert slugs == {card.decode()}


async def test_an_empty_specialty_leaves_the_list(
    directory: DirectoryService,
    redis: Redis,
) -> None:
    """Moving or removing a specialty's last doctor drops the slug; others stay."""
    await directory.upsert_doctor(doctor("a", specialty="pediatria"))
    await directory.upsert_doctor(doctor("b", specialty="pediatria"))
    await directory.upsert_doctor(doctor("a", specialty="neurologia"))
    specialties = await directory.specialties()
    assert msgspec.to_builtins(specialties)["items"] == [
        {"slug": "neurologia", "doctors": 1},
        {"slug": "pediatria", "doctors": 1},
    ]
    await directory.remove_doctor("b")
    slugs = {m.decode() for m in await redis.zrange(keys.directory_specialties(), 0, -1)}
    assert slugs == {"neurologia"}
