"""A record's title and file name are sealed with the record's own key (issue 14, finding 8):
the store holds neither in the clear, every reader still sees them, and sealed names moved
under another record do not open."""

from __future__ import annotations

import msgspec
import pytest

from engine.records import RecordIntegrityError
from engine.records._model import record_pk, record_sk
from tests.integration.test_records_service import PDF, World, chunks, read_all
from tests.integration.test_records_service import world as world


async def test_title_and_filename_are_not_stored_in_the_clear(world: World) -> None:
    """The item holds no title or file name; get, list, the doctor's list, the download and
    the export all show them."""
    patient, doctor = world.patient(), world.doctor()
    info = await world.service.upload(
        patient, chunks(PDF), kind="exam", title="Resultado HIV+", filename="hiv-positivo.pdf"
    )
    item = await world.store.get(record_pk(patient.user_id), record_sk(info.id))
    assert item is not None
    stored = msgspec.json.encode(item.data).decode()
    for secret in ("HIV", "hiv-positivo"):
        assert secret not in stored
    assert (info.title, info.filename) == ("Resultado HIV+", "hiv-positivo.pdf")
    assert await world.service.get_record(patient, info.id) == info
    assert (await world.service.list_records(patient)).items == [info]
    await world.service.create_share(
        patient, doctor_id=doctor.user_id, record_ids=[info.id], groups=None,
        expires_at=world.expiry(),
    )  # fmt: skip
    assert (await world.service.doctor_records(doctor, patient.user_id)).items == [info]
    content = await world.service.open_content(patient, info.id)
    assert content.info.filename == "hiv-positivo.pdf"
    await content.close()
    export = await world.service.export_user(patient)
    assert export["records"][0]["title"] == "Resultado HIV+"
    assert await read_all(world.service, patient, info.id) == PDF


async def test_sealed_names_moved_to_another_record_do_not_open(world: World) -> None:
    """Copying one record's sealed names onto another fails the integrity check."""
    patient = world.patient()
    a = await world.service.upload(patient, chunks(PDF), kind="exam", title="A", filename="a.pdf")
    b = await world.service.upload(patient, chunks(PDF), kind="exam", title="B", filename="b.pdf")
    item_a = await world.store.get(record_pk(patient.user_id), record_sk(a.id))
    item_b = await world.store.get(record_pk(patient.user_id), record_sk(b.id))
    assert item_a is not None
    assert item_b is not None
    moved = msgspec.structs.replace(item_b, data={**item_b.data, "names": item_a.data["names"]})
    await world.store.put(moved)
    with pytest.raises(RecordIntegrityError):
        await world.service.get_record(patient, b.id)
