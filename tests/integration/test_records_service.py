"""RecordService end to end without HTTP, on both deployments: embedded (SQLite, a directory,
a local master key) and AWS (DynamoDB, S3 and KMS, all moto's server over HTTP)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioboto3
import pytest

from engine.config import Settings
from engine.errors import Forbidden, Invalid, NotFound, PayloadTooLarge, UnsupportedMedia
from engine.principal import Principal
from engine.records import (
    DirectoryBlobStore,
    KmsKeyWrapper,
    LocalKeyWrapper,
    RecordIntegrityError,
    RecordService,
    S3BlobStore,
)
from engine.store import SQLiteStore, Store
from engine.store._dynamodb import DynamoDBStore
from engine.timeutil import new_id, to_rfc3339

DAY = 86_400_000
PDF = b"%PDF-1.7\n" + b"exam body line\n" * 20_000  # ~300 KiB: several segments
MAX = 512 * 1024


class Doctors:
    """The accounts service's doctor lookup, reduced to a set of ids."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    async def get_doctor(self, doctor_id: str) -> object:
        if doctor_id not in self.ids:
            raise NotFound("doctor not found", code="doctor_not_found")
        return doctor_id


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000_000

    def __call__(self) -> int:
        return self.now


@dataclass
class World:
    service: RecordService
    store: Store
    blobs: DirectoryBlobStore | S3BlobStore
    doctors: Doctors
    clock: Clock

    def patient(self) -> Principal:
        return Principal(user_id=new_id(), role="patient", jti="j", issued_at=0, expires_at=0)

    def doctor(self) -> Principal:
        doctor = Principal(user_id=new_id(), role="doctor", jti="j", issued_at=0, expires_at=0)
        self.doctors.ids.add(doctor.user_id)
        return doctor

    def expiry(self, days: float = 1) -> str:
        return to_rfc3339(self.clock.now + int(days * DAY))


@pytest.fixture(params=[pytest.param("embedded", id="embedded"), pytest.param("aws", id="aws")])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    settings = Settings(data_dir=tmp_path, record_max_bytes=MAX)
    doctors, clock = Doctors(), Clock()
    if request.param == "embedded":
        store: Store = await SQLiteStore.open(tmp_path / "store.sqlite3")
        blobs: DirectoryBlobStore | S3BlobStore = await DirectoryBlobStore.open(tmp_path / "b")
        keys: LocalKeyWrapper | KmsKeyWrapper = LocalKeyWrapper(os.urandom(32))
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        name = f"records-{uuid.uuid4().hex[:12]}"
        store = await DynamoDBStore.open(name, endpoint_url=endpoint, create=True)
        blobs = await S3BlobStore.open(name, "records", endpoint_url=endpoint)
        await blobs.client.create_bucket(Bucket=name)
        async with aioboto3.Session().client("kms", endpoint_url=endpoint) as kms:
            key_id = (await kms.create_key())["KeyMetadata"]["KeyId"]
        keys = await KmsKeyWrapper.open(key_id, endpoint_url=endpoint)
    service = RecordService(settings, store, doctors, blobs=blobs, keys=keys, clock=clock)
    await service.open()
    yield World(service, store, blobs, doctors, clock)
    await service.close()
    await keys.close()
    await blobs.close()
    await store.close()


async def chunks(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(service: RecordService, patient: Principal, record_id: str) -> bytes:
    content = await service.open_content(patient, record_id)
    return b"".join([c async for c in content.chunks()])


async def blob_count(world: World) -> int:
    if isinstance(world.blobs, DirectoryBlobStore):
        return sum(1 for p in world.blobs.root.rglob("*") if p.is_file())
    listed = await world.blobs.client.list_objects_v2(Bucket=world.blobs.bucket)
    return len(listed.get("Contents", []))


async def test_upload_round_trip_keeps_bytes_and_metadata(world: World) -> None:
    """An upload reads back identical, with size, SHA-256 and sniffed type in its metadata."""
    patient = world.patient()
    info = await world.service.upload(
        patient, chunks(PDF), kind="exam", group="Cardio-2026", title=" ECG ", filename="../x.pdf"
    )
    assert (info.kind, info.group, info.title, info.filename) == (
        "exam",
        "cardio-2026",
        "ECG",
        "x.pdf",
    )
    assert info.content_type == "application/pdf"
    assert info.size == len(PDF)
    assert info.sha256 == hashlib.sha256(PDF).hexdigest()
    assert await world.service.get_record(patient, info.id) == info
    assert await read_all(world.service, patient, info.id) == PDF


async def test_refused_uploads_leave_no_blob(world: World) -> None:
    """415, 413, empty and bad-kind uploads leave nothing stored."""
    patient = world.patient()
    text_then_binary = b"notes\n" * 2000 + b"\x7fELF\x00\x00"
    with pytest.raises(UnsupportedMedia):
        await world.service.upload(patient, chunks(text_then_binary), kind="other")
    with pytest.raises(UnsupportedMedia):
        await world.service.upload(patient, chunks(b"MZ" + b"\x00" * 5000), kind="other")
    with pytest.raises(PayloadTooLarge):
        await world.service.upload(patient, chunks(b"%PDF-" + b"a" * MAX), kind="exam")
    with pytest.raises(Invalid) as empty:
        await world.service.upload(patient, chunks(b""), kind="exam")
    assert empty.value.code == "empty_file"
    with pytest.raises(Invalid) as bad_kind:
        await world.service.upload(patient, chunks(PDF), kind="selfie")
    assert bad_kind.value.code == "invalid_kind"
    assert await blob_count(world) == 0
    assert (await world.service.list_records(patient)).items == []


async def test_exactly_the_limit_is_accepted(world: World) -> None:
    """A file of exactly record_max_bytes is stored; one byte more is 413."""
    patient = world.patient()
    at_limit = b"%PDF-" + b"a" * (MAX - 5)
    info = await world.service.upload(patient, chunks(at_limit, 65_536), kind="exam")
    assert info.size == MAX
    with pytest.raises(PayloadTooLarge):
        await world.service.upload(patient, chunks(at_limit + b"a", 65_536), kind="exam")


async def test_list_filters_and_pages(world: World) -> None:
    """Lists filter by kind and group and page with a cursor, newest first."""
    patient = world.patient()
    ids = []
    for i in range(5):
        kind = "exam" if i % 2 == 0 else "report"
        info = await world.service.upload(
            patient, chunks(b"text %d\n" % i), kind=kind, group="g1" if i < 3 else "g2"
        )
        ids.append(info.id)
    page = await world.service.list_records(patient, limit=2)
    assert [r.id for r in page.items] == ids[::-1][:2]
    rest = await world.service.list_records(patient, limit=10, cursor=page.next_cursor)
    assert [r.id for r in rest.items] == ids[::-1][2:]
    assert rest.next_cursor is None
    exams = await world.service.list_records(patient, kind="exam")
    assert [r.id for r in exams.items] == [ids[4], ids[2], ids[0]]
    g1_reports = await world.service.list_records(patient, kind="report", group="G1")
    assert [r.id for r in g1_reports.items] == [ids[1]]
    with pytest.raises(Invalid):
        await world.service.list_records(patient, kind="nope")
    with pytest.raises(Invalid):
        await world.service.list_records(patient, cursor="garbage!")


async def test_another_patients_record_is_not_found(world: World) -> None:
    """Metadata, content and delete of someone else's record are 404, like a missing id."""
    owner, other = world.patient(), world.patient()
    info = await world.service.upload(owner, chunks(PDF), kind="exam")
    for call in (
        world.service.get_record(other, info.id),
        world.service.open_content(other, info.id),
        world.service.delete_record(other, info.id),
        world.service.get_record(other, "../" + info.id),
    ):
        with pytest.raises(NotFound) as caught:
            await call
        assert caught.value.detail == "record not found"
    assert (await world.service.list_records(other)).items == []


async def test_doctors_cannot_use_patient_actions(world: World) -> None:
    """The engine itself refuses the wrong role (defence in depth behind the gateway)."""
    with pytest.raises(Forbidden):
        await world.service.list_records(world.doctor())


async def test_group_share_covers_later_records_until_revoked(world: World) -> None:
    """A group share covers records added later; revocation takes effect at once."""
    patient, doctor = world.patient(), world.doctor()
    share = await world.service.create_share(
        patient,
        doctor_id=doctor.user_id,
        record_ids=None,
        groups=["cardio"],
        expires_at=world.expiry(),
    )
    assert share.active
    assert (await world.service.doctor_records(doctor, patient.user_id)).items == []
    later = await world.service.upload(patient, chunks(PDF), kind="exam", group="cardio")
    other_group = await world.service.upload(patient, chunks(PDF), kind="exam", group="derm")
    listed = await world.service.doctor_records(doctor, patient.user_id)
    assert [r.id for r in listed.items] == [later.id]
    content = await world.service.doctor_content(doctor, patient.user_id, later.id)
    assert b"".join([c async for c in content.chunks()]) == PDF
    with pytest.raises(NotFound):
        await world.service.doctor_content(doctor, patient.user_id, other_group.id)
    await world.service.revoke_share(patient, share.id)
    await world.service.revoke_share(patient, share.id)
    with pytest.raises(NotFound):
        await world.service.doctor_records(doctor, patient.user_id)
    with pytest.raises(NotFound):
        await world.service.doctor_content(doctor, patient.user_id, later.id)
    shares = await world.service.list_shares(patient)
    assert [(s.id, s.active, s.revoked_at is not None) for s in shares.items] == [
        (share.id, False, True)
    ]


async def test_a_share_expires_on_time(world: World) -> None:
    """At expires_at the share stops granting anything and is listed inactive."""
    patient, doctor = world.patient(), world.doctor()
    info = await world.service.upload(patient, chunks(PDF), kind="exam")
    await world.service.create_share(
        patient,
        doctor_id=doctor.user_id,
        record_ids=[info.id],
        groups=None,
        expires_at=world.expiry(1),
    )
    world.clock.now += DAY - 1
    assert len((await world.service.doctor_records(doctor, patient.user_id)).items) == 1
    world.clock.now += 1
    with pytest.raises(NotFound):
        await world.service.doctor_records(doctor, patient.user_id)
    assert (await world.service.list_shares(patient, active=True)).items == []
    assert len((await world.service.list_shares(patient, active=False)).items) == 1


async def test_share_validation(world: World) -> None:
    """Unknown doctor, foreign or unknown record, empty share and bad expiry are 422."""
    patient, other, doctor = world.patient(), world.patient(), world.doctor()
    mine = await world.service.upload(patient, chunks(PDF), kind="exam")
    theirs = await world.service.upload(other, chunks(PDF), kind="exam")

    async def create(**overrides: Any) -> object:
        body: dict[str, Any] = {
            "doctor_id": doctor.user_id,
            "record_ids": [mine.id],
            "groups": None,
            "expires_at": world.expiry(),
        }
        body.update(overrides)
        return await world.service.create_share(patient, **body)

    cases: dict[str, dict[str, Any]] = {
        "unknown_doctor": {"doctor_id": new_id()},
        "empty_share": {"record_ids": [], "groups": []},
        "invalid_expiry": {"expires_at": world.expiry(-1)},
        "invalid_group": {"groups": ["no spaces allowed"]},
        "invalid_time": {"expires_at": "tomorrow"},
    }
    for code, overrides in cases.items():
        with pytest.raises(Invalid) as caught:
            await create(**overrides)
        assert caught.value.code == code
    with pytest.raises(Invalid) as too_far:
        await create(expires_at=world.expiry(365.001))
    assert too_far.value.code == "invalid_expiry"
    await create(expires_at=world.expiry(365))
    answers = []
    for foreign in (theirs.id, new_id()):
        with pytest.raises(Invalid) as caught:
            await create(record_ids=[mine.id, foreign])
        answers.append((caught.value.code, caught.value.detail))
    assert (
        answers[0] == answers[1] == ("unknown_record", "record_ids[1] is not one of your records")
    )
    with pytest.raises(Invalid) as not_a_doctor:
        await create(doctor_id=other.user_id)
    assert not_a_doctor.value.code == "unknown_doctor"


async def test_doctor_reads_are_logged_and_shown_to_the_patient(world: World) -> None:
    """Every doctor list and download lands in the patient's access log, newest first."""
    patient, doctor = world.patient(), world.doctor()
    info = await world.service.upload(patient, chunks(PDF), kind="exam")
    await world.service.create_share(
        patient,
        doctor_id=doctor.user_id,
        record_ids=[info.id],
        groups=None,
        expires_at=world.expiry(),
    )
    await world.service.doctor_records(doctor, patient.user_id)
    world.clock.now += 1000
    content = await world.service.doctor_content(doctor, patient.user_id, info.id)
    await content.close()
    log = (await world.service.access_log(patient)).items
    assert [(e.record_id, e.doctor_id, e.action) for e in log] == [
        (info.id, doctor.user_id, "download"),
        (info.id, doctor.user_id, "list"),
    ]


async def test_deleting_a_record_removes_blob_and_share_references(world: World) -> None:
    """Delete removes the metadata, the blob and the id from every share."""
    patient, doctor = world.patient(), world.doctor()
    info = await world.service.upload(patient, chunks(PDF), kind="exam")
    await world.service.create_share(
        patient,
        doctor_id=doctor.user_id,
        record_ids=[info.id],
        groups=["x"],
        expires_at=world.expiry(),
    )
    assert await blob_count(world) == 1
    await world.service.delete_record(patient, info.id)
    assert await blob_count(world) == 0
    with pytest.raises(NotFound):
        await world.service.get_record(patient, info.id)
    (share,) = (await world.service.list_shares(patient)).items
    assert share.record_ids == []
    assert share.groups == ["x"]


async def test_a_tampered_blob_fails_before_any_byte(world: World) -> None:
    """A flipped byte in the stored blob raises before content is returned at all."""
    patient = world.patient()
    info = await world.service.upload(patient, chunks(PDF), kind="exam")
    stored = await world.store.get(f"USER#{patient.user_id}", f"REC#{info.id}")
    assert stored is not None
    blob_id = stored.data["blob_id"]
    blob = b"".join([c async for c in world.blobs.read(blob_id)])
    assert b"exam body line" not in blob
    tampered = bytearray(blob)
    tampered[len(blob) - 100] ^= 0x01  # the last segment: a streaming reader would have sent most
    writer = await world.blobs.open_writer(blob_id)
    await writer.write(bytes(tampered))
    await writer.commit()
    with pytest.raises(RecordIntegrityError):
        await world.service.open_content(patient, info.id)
    await world.blobs.delete(blob_id)
    with pytest.raises(RecordIntegrityError):
        await world.service.open_content(patient, info.id)


async def test_export_and_erasure(world: World) -> None:
    """Export lists records, shares and access log; erasure deletes blobs and every item."""
    patient, doctor = world.patient(), world.doctor()
    info = await world.service.upload(patient, chunks(PDF), kind="exam", filename="ecg.pdf")
    await world.service.create_share(
        patient,
        doctor_id=doctor.user_id,
        record_ids=[info.id],
        groups=None,
        expires_at=world.expiry(),
    )
    await world.service.doctor_records(doctor, patient.user_id)
    exported = await world.service.export_user(patient)
    assert [r["filename"] for r in exported["records"]] == ["ecg.pdf"]
    assert "wrapped_key" not in exported["records"][0]
    assert [s["doctor_id"] for s in exported["shares"]] == [doctor.user_id]
    assert [e["action"] for e in exported["access_log"]] == ["list"]
    assert await world.service.export_user(doctor) == {}
    await world.service.erase_user(patient)
    await world.service.erase_user(patient)
    assert await blob_count(world) == 0
    assert await world.store.query(f"USER#{patient.user_id}") == []
    assert await world.service.export_user(patient) == {
        "records": [],
        "shares": [],
        "access_log": [],
    }
