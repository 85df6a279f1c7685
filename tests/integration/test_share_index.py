"""Finding 10 (issue 14): a doctor's read loaded every share of the patient. Shares are
indexed by doctor and expiry, so a read costs the same whether the patient has 1 share or
hundreds, on both deployments (SQLite; DynamoDB through moto's server)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from engine.errors import NotFound
from engine.records._model import Share, record_pk
from engine.store import Item
from engine.timeutil import new_id
from tests.integration.test_records_service import DAY, World, chunks, world

__all__ = ["world"]


def _count_share_reads(world: World) -> list[str]:
    """Wrap the store's reads: the sort keys of the share items they return."""
    seen: list[str] = []
    store: Any = world.store
    real_get, real_query = store.get, store.query

    async def get(pk: str, sk: str) -> Item | None:
        item = await real_get(pk, sk)
        if item is not None and item.sk.startswith("SHARE#"):
            seen.append(item.sk)
        return item

    async def query(pk: str, **kwargs: Any) -> list[Item]:
        items = await real_query(pk, **kwargs)
        seen.extend(i.sk for i in items if i.sk.startswith("SHARE#"))
        return list(items)

    store.get, store.query = get, query
    return seen


async def test_a_doctor_download_reads_only_that_doctors_live_shares(world: World) -> None:
    """A patient with 60 shares to other doctors, 3 expired and 1 revoked share to this
    doctor, and 1 active one: the doctor's download and listing read that one share item
    only; the revoked share's and expired shares' records stay out of reach (404)."""
    patient, doctor = world.patient(), world.doctor()
    service = world.service
    info = await service.upload(patient, chunks(b"exam notes\n"), kind="exam")
    hidden = await service.upload(patient, chunks(b"old notes\n"), kind="exam")
    for _ in range(60):
        other = world.doctor()
        await service.create_share(
            patient,
            doctor_id=other.user_id,
            record_ids=[info.id],
            groups=None,
            expires_at=world.expiry(30),
        )
    for days in (1, 2, 3):
        await service.create_share(
            patient,
            doctor_id=doctor.user_id,
            record_ids=[hidden.id],
            groups=None,
            expires_at=world.expiry(days),
        )
    revoked = await service.create_share(
        patient,
        doctor_id=doctor.user_id,
        record_ids=[hidden.id],
        groups=None,
        expires_at=world.expiry(90),
    )
    await service.revoke_share(patient, revoked.id)
    await service.create_share(
        patient,
        doctor_id=doctor.user_id,
        record_ids=[info.id],
        groups=None,
        expires_at=world.expiry(10),
    )
    world.clock.now += 4 * DAY  # the three short shares have expired
    await service.doctor_records(doctor, patient.user_id)  # indexes nothing new: all indexed
    seen = _count_share_reads(world)
    content = await service.doctor_content(doctor, patient.user_id, info.id)
    await content.close()
    page = await service.doctor_records(doctor, patient.user_id)
    assert [r.id for r in page.items] == [info.id]
    assert len(seen) == 2, seen  # one share item a request
    with pytest.raises(NotFound):
        await service.doctor_content(doctor, patient.user_id, hidden.id)


async def test_shares_made_before_the_index_are_indexed_on_first_read(world: World) -> None:
    """A share item written in the old layout (no index entry, no marker) still lets its
    doctor read; the first read indexes it and writes the marker; erasure leaves no entry."""
    from engine.records._shares import INDEX_PREFIX

    patient, doctor = world.patient(), world.doctor()
    info = await world.service.upload(patient, chunks(b"exam notes\n"), kind="exam")
    now = world.clock.now
    share = Share(
        id=new_id(),
        patient_id=patient.user_id,
        doctor_id=doctor.user_id,
        record_ids=[info.id],
        groups=[],
        expires_at=now + DAY,
        created_at=now,
    )
    pk = record_pk(patient.user_id)
    await world.store.put(Item(pk=pk, sk=f"SHARE#{share.id}", data=msgspec.to_builtins(share)))
    content = await world.service.doctor_content(doctor, patient.user_id, info.id)
    await content.close()
    index = await world.store.query(pk, prefix=INDEX_PREFIX)
    assert [i.sk for i in index] == [
        INDEX_PREFIX,
        f"{INDEX_PREFIX}{doctor.user_id}#{share.expires_at:013d}#{share.id}",
    ]
    await world.service.revoke_share(patient, share.id)
    assert [i.sk for i in await world.store.query(pk, prefix=INDEX_PREFIX)] == [INDEX_PREFIX]
    with pytest.raises(NotFound):
        await world.service.doctor_content(doctor, patient.user_id, info.id)
    await world.service.erase_user(patient)
    assert await world.store.query(pk, prefix="SHARE") == []
