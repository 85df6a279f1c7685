"""One upload in progress: sniff, count, hash, encrypt and write, chunk by chunk.

Memory per upload is bounded by one segment plus one incoming chunk (plus ``SNIFF_BYTES`` of
head before the type is known), whatever the file size. Nothing is created before the type is
recognised: a refused file costs no key and no blob. On any failure the partial blob is
aborted, so the store never keeps a blob without metadata pointing to it (except after a crash
mid-upload: see ``_blobs`` for the sweep of temporary files).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import msgspec

from engine.errors import Invalid, PayloadTooLarge
from engine.records._crypto import SegmentEncryptor
from engine.records._model import (
    Record,
    RecordInfo,
    check_group,
    check_kind,
    check_title,
    clean_filename,
    record_pk,
    record_sk,
    seal_names,
)
from engine.records._sniff import SNIFF_BYTES, TEXT, TextGuard, check_text_chunk, check_text_end
from engine.records._sniff import sniff as sniff_type
from engine.store import ConditionFailed, Item
from engine.timeutil import new_id

if TYPE_CHECKING:
    from engine.records._blobs import BlobStore, BlobWriter
    from engine.records._keys import KeyWrapper
    from engine.store import Store


class PendingUpload:
    """Feed ``write(chunk)`` for every chunk, then ``finish(...)``; ``abort()`` on any error
    (idempotent; ``write`` and ``finish`` abort by themselves when they raise)."""

    def __init__(
        self,
        *,
        patient_id: str,
        store: Store,
        blobs: BlobStore,
        keys: KeyWrapper,
        max_bytes: int,
        clock_ms: int,
    ) -> None:
        self.record_id = new_id()
        self._patient_id = patient_id
        self._store = store
        self._blobs = blobs
        self._keys = keys
        self._max = max_bytes
        self._uploaded_at = clock_ms
        self._blob_id = new_id()
        self._head = bytearray()
        self._size = 0
        self._sha = hashlib.sha256()
        self._content_type: str | None = None
        self._guard: TextGuard | None = None
        self._encryptor: SegmentEncryptor | None = None
        self._writer: BlobWriter | None = None
        self._wrapped = b""
        self._key = b""
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    async def write(self, chunk: bytes) -> None:
        if self._closed:
            raise RuntimeError("upload is closed")
        if not chunk:
            return
        try:
            self._size += len(chunk)
            if self._size > self._max:
                raise PayloadTooLarge(
                    f"a record is at most {self._max} bytes", code="record_too_large"
                )
            if self._content_type is None:
                self._head += chunk
                if len(self._head) >= SNIFF_BYTES:
                    await self._begin()
            else:
                await self._process(chunk)
        except BaseException:
            await self.abort()
            raise

    async def _begin(self) -> None:
        head, self._head = bytes(self._head), bytearray()
        self._content_type = sniff_type(head[:SNIFF_BYTES])
        if self._content_type == TEXT:
            self._guard = TextGuard()
        context = {"patient_id": self._patient_id, "record_id": self.record_id}
        key, self._wrapped = await self._keys.generate(context)
        self._key = key  # also seals the title and file name (finish)
        self._encryptor = SegmentEncryptor(key, self.record_id)
        self._writer = await self._blobs.open_writer(self._blob_id)
        await self._writer.write(self._encryptor.header())
        await self._process(head)

    async def _process(self, data: bytes) -> None:
        assert self._encryptor is not None
        assert self._writer is not None
        self._sha.update(data)
        if self._guard is not None:
            check_text_chunk(self._guard, data)
        for segment in self._encryptor.update(data):
            await self._writer.write(segment)

    async def finish(
        self, *, kind: str | None, group: str | None, title: str | None, filename: str | None
    ) -> RecordInfo:
        """Validate the metadata, seal and commit the blob, then write the metadata item."""
        if self._closed:
            raise RuntimeError("upload is closed")
        try:
            checked_kind = check_kind(kind)
            checked_group = check_group(group)
            checked_title = check_title(title)
            if self._size == 0:
                raise Invalid("the file is empty", code="empty_file", field="file")
            if self._content_type is None:
                await self._begin()
            assert self._encryptor is not None
            assert self._writer is not None
            assert self._content_type is not None
            if self._guard is not None:
                check_text_end(self._guard)
            await self._writer.write(self._encryptor.finalize())
            writer, self._writer = self._writer, None
            await writer.commit()
        except BaseException:
            await self.abort()
            raise
        self._closed = True
        record = Record(
            id=self.record_id,
            patient_id=self._patient_id,
            kind=checked_kind or "other",
            group=checked_group,
            title=checked_title,
            filename=clean_filename(filename, self._content_type),
            content_type=self._content_type,
            size=self._size,
            sha256=self._sha.hexdigest(),
            uploaded_at=self._uploaded_at,
            blob_id=self._blob_id,
            key_provider=self._keys.name,
            wrapped_key=self._wrapped,
        )
        item = Item(
            pk=record_pk(self._patient_id),
            sk=record_sk(record.id),
            data=record_data(seal_names(record, self._key)),
        )
        try:
            await self._store.put(item, expect="absent")
        except BaseException as exc:
            await self._blobs.delete(self._blob_id)
            if isinstance(exc, ConditionFailed):  # a ULID collision: not the client's fault
                raise RuntimeError("record id collision") from exc
            raise
        return record.info()

    async def abort(self) -> None:
        """Discard the partial blob; safe to call at any point, any number of times."""
        self._closed = True
        self._head = bytearray()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.abort()


def record_data(record: Record) -> dict[str, Any]:
    """The stored form of a record (bytes as base64 strings, JSON-compatible)."""
    data: dict[str, Any] = msgspec.to_builtins(record)
    return data
