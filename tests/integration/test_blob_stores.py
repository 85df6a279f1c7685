"""The blob store port's contract, run against both adapters: a directory and S3.

S3 is moto's server over real HTTP, driven by the real aioboto3 client; every test gets a
fresh bucket. Part size is S3's minimum (5 MiB), so the large-object test crosses parts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.records import BlobNotFound, BlobStore, DirectoryBlobStore, S3BlobStore
from engine.records._s3 import MIN_PART


@pytest.fixture(params=[pytest.param("file", id="file"), pytest.param("s3", id="s3")])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "file":
        yield await DirectoryBlobStore.open(tmp_path / "blobs")
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"blobs-{uuid.uuid4().hex[:12]}"
    store = await S3BlobStore.open(bucket, "records/v1", endpoint_url=endpoint)
    await store.client.create_bucket(Bucket=bucket)
    yield store
    listed = await store.client.list_objects_v2(Bucket=bucket)
    for obj in listed.get("Contents", []):
        await store.client.delete_object(Bucket=bucket, Key=obj["Key"])
    await store.client.delete_bucket(Bucket=bucket)
    await store.close()


async def put(blobs: BlobStore, blob_id: str, data: bytes, chunk: int = 64 * 1024) -> None:
    writer = await blobs.open_writer(blob_id)
    for i in range(0, len(data), chunk):
        await writer.write(data[i : i + chunk])
    await writer.commit()


async def read(blobs: BlobStore, blob_id: str) -> bytes:
    return b"".join([chunk async for chunk in blobs.read(blob_id)])


async def test_a_committed_blob_reads_back_exactly(blobs: BlobStore) -> None:
    """Bytes written in chunks and committed read back identical."""
    data = os.urandom(200_000)
    await put(blobs, "01HBLOBAAAA", data, chunk=7_777)
    assert await blobs.exists("01HBLOBAAAA")
    assert await read(blobs, "01HBLOBAAAA") == data


async def test_reads_come_in_bounded_chunks(blobs: BlobStore) -> None:
    """A reader never gets more than one read chunk (64 KiB) at a time."""
    await put(blobs, "01HBOUNDED", os.urandom(300_000))
    sizes = [len(chunk) async for chunk in blobs.read("01HBOUNDED")]
    assert sum(sizes) == 300_000
    assert max(sizes) <= 64 * 1024


async def test_a_large_blob_crosses_upload_parts(blobs: BlobStore) -> None:
    """An object larger than one S3 part (multipart upload) reads back exactly."""
    data = os.urandom(2 * MIN_PART + 12_345)
    await put(blobs, "01HLARGE", data)
    assert await read(blobs, "01HLARGE") == data


async def test_an_empty_blob_is_a_blob(blobs: BlobStore) -> None:
    """Committing without writing stores an empty object."""
    await put(blobs, "01HEMPTY", b"")
    assert await blobs.exists("01HEMPTY")
    assert await read(blobs, "01HEMPTY") == b""


async def test_an_uncommitted_blob_is_invisible(blobs: BlobStore) -> None:
    """Until commit, nothing is readable under the blob's id."""
    writer = await blobs.open_writer("01HPENDING")
    await writer.write(os.urandom(MIN_PART + 10))
    assert not await blobs.exists("01HPENDING")
    with pytest.raises(BlobNotFound):
        await read(blobs, "01HPENDING")
    await writer.abort()


async def test_an_aborted_blob_leaves_nothing(blobs: BlobStore, tmp_path: Path) -> None:
    """Abort discards the partial bytes (also across parts) and is idempotent."""
    writer = await blobs.open_writer("01HABORTED")
    await writer.write(os.urandom(MIN_PART + 10))
    await writer.write(b"tail")
    await writer.abort()
    await writer.abort()
    assert not await blobs.exists("01HABORTED")
    if isinstance(blobs, DirectoryBlobStore):
        assert list((blobs.root / ".tmp").iterdir()) == []
    else:
        assert isinstance(blobs, S3BlobStore)
        uploads: Any = await blobs.client.list_multipart_uploads(Bucket=blobs.bucket)
        assert not uploads.get("Uploads")


async def test_reading_a_missing_blob_raises_not_found(blobs: BlobStore) -> None:
    """A blob id that was never committed is BlobNotFound, not an I/O error."""
    with pytest.raises(BlobNotFound):
        await read(blobs, "01HNEVER")


async def test_delete_removes_and_is_idempotent(blobs: BlobStore) -> None:
    """Deleting twice, or deleting what never existed, is fine."""
    await put(blobs, "01HDOOMED", b"bytes")
    await blobs.delete("01HDOOMED")
    await blobs.delete("01HDOOMED")
    await blobs.delete("01HNOTHING")
    assert not await blobs.exists("01HDOOMED")


@pytest.mark.parametrize(
    "bad", ["../escape", "a/b", "..", "", "x" * 65, "name.pdf", "a\x00b", "C:\\evil"]
)
async def test_ids_that_could_be_paths_are_rejected(blobs: BlobStore, bad: str) -> None:
    """Only server-style ids (letters and digits) ever name a blob."""
    with pytest.raises(ValueError, match="blob ids"):
        await blobs.open_writer(bad)
    with pytest.raises(ValueError, match="blob ids"):
        await blobs.delete(bad)


async def test_directory_blobs_are_private_files(tmp_path: Path) -> None:
    """Directory adapter: files are 0600 under 0700 directories, named by id only."""
    store = await DirectoryBlobStore.open(tmp_path / "blobs")
    await put(store, "01HPRIVATE", b"secret")
    path = store.path("01HPRIVATE")
    assert path.name == "01HPRIVATE"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "blobs").stat().st_mode & 0o777 == 0o700


async def test_directory_small_blob_is_one_thread_hop_and_stays_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Directory adapter: the writes of a small blob wait in memory for commit, which does
    them in one worker-thread hop, in the durable order: every byte written, the file
    fsynced, renamed into place, the directory fsynced; nothing is on disk before commit. A
    blob past the buffer is written out as it comes."""
    from engine.records import _files

    store = await DirectoryBlobStore.open(tmp_path / "blobs")
    hops: list[str] = []
    calls: list[str] = []
    real_to_thread, real_write, real_fsync, real_replace = (
        _files.asyncio.to_thread, os.write, os.fsync, os.replace
    )  # fmt: skip

    async def to_thread(fn: Any, /, *args: Any) -> Any:
        hops.append(fn.__name__)
        return await real_to_thread(fn, *args)

    def write(fd: int, data: Any) -> int:
        calls.append("write")
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(_files.asyncio, "to_thread", to_thread)
    monkeypatch.setattr(_files.os, "write", write)
    monkeypatch.setattr(_files.os, "fsync", fsync)
    monkeypatch.setattr(_files.os, "replace", replace)
    writer = await store.open_writer("01HSMALL")
    for part in (b"header", b"segment " * 100, b"tag"):
        await writer.write(part)
    assert list((store.root / ".tmp").iterdir()) == []
    await writer.commit()
    assert hops == ["_commit"]
    assert calls == ["write"] * 3 + ["fsync", "replace", "fsync"]
    assert await read(store, "01HSMALL") == b"header" + b"segment " * 100 + b"tag"

    hops.clear()
    big = os.urandom(3 * _files.BUFFER_BYTES + 5)
    await put(store, "01HBIG", big, chunk=_files.BUFFER_BYTES // 2)
    assert hops.count("_write_out") == 3
    assert hops[-1] == "_commit"
    assert await read(store, "01HBIG") == big
