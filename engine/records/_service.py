"""The health record service: uploads, reads, deletion, shares, doctor access, LGPD.

Reads never release unverified bytes. Before a download starts, the whole blob is read once,
every segment is authenticated, and the plaintext's size and SHA-256 are checked against the
metadata; the ciphertext is copied meanwhile into an anonymous temporary file (never the
plaintext). The response then decrypts that private, already verified copy, so a blob tampered
with in storage fails the request with ``RecordIntegrityError`` (an internal error,
``record_integrity_error``) before a single byte is sent, and a blob modified between the check and
the send cannot reach the client either. The cost is one extra sequential read and a temporary file
the size of the ciphertext; memory stays at one segment.

Doctor reads are checked against the patient's active shares at the moment of the request,
and logged durably (after the verification, before the first byte is sent).

LGPD erasure of a patient deletes every blob, then every record, share and access-log entry
(the log exists for the patient's own oversight and names the patient; keeping it after the
patient asked for erasure has no legal basis here). Doctors hold nothing in this service.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
from typing import IO, TYPE_CHECKING, Any, ClassVar

import msgspec

from engine.errors import EngineError, NotFound, Unavailable
from engine.paging import LIMIT_DEFAULT, scan, scan_all
from engine.records._blobs import BlobNotFound
from engine.records._crypto import TAG_BYTES, IntegrityError, SegmentDecryptor
from engine.records._keys import open_key_wrapper
from engine.records._model import (
    KINDS,
    Record,
    RecordInfo,
    RecordPage,
    check_group,
    check_kind,
    is_id,
    open_names,
    record_pk,
    record_sk,
)
from engine.records._sealed import Sealer
from engine.records._shares import INDEX_PREFIX, ShareBook, access_entry
from engine.records._upload import PendingUpload
from engine.store import MAX_TRANSACT, ConditionFailed, Delete, Item, Put
from engine.timeutil import now_ms

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterable,
        AsyncIterator,
        Awaitable,
        Callable,
        Iterable,
        Sequence,
    )
    from pathlib import Path

    from engine.config import Settings
    from engine.principal import Principal, Role
    from engine.records._blobs import BlobStore
    from engine.records._keys import KeyWrapper
    from engine.records._model import AccessPage, ShareInfo, SharePage
    from engine.records._shares import DoctorLookup
    from engine.store import Store

log = logging.getLogger("healthmed.records")

_RETRIES = 5
_SPOOL_CHUNK = 64 * 1024 + TAG_BYTES


class RecordIntegrityError(EngineError):
    """A stored record does not verify (tampered, truncated, missing): a server-side failure,
    never the client's input. Nothing of the record is served."""

    default_code: ClassVar[str] = "record_integrity_error"


def _record(item: Item) -> Record:
    return msgspec.convert(item.data, Record)


def _record_not_found() -> NotFound:
    return NotFound("record not found", code="record_not_found")


def _require(principal: Principal, role: Role) -> str:
    return principal.require(role).user_id


class RecordContent:
    """A verified record, ready to stream. Iterate ``chunks()`` once; ``close()`` always."""

    def __init__(self, info: RecordInfo, spool: IO[bytes], key: bytes, record_id: str) -> None:
        self.info = info
        self._spool = spool
        self._key = key
        self._record_id = record_id

    async def chunks(self) -> AsyncIterator[bytes]:
        """Plaintext, one segment at a time, from the private verified copy."""
        decryptor = SegmentDecryptor(self._key, self._record_id)
        try:
            await asyncio.to_thread(self._spool.seek, 0)
            while chunk := await asyncio.to_thread(self._spool.read, _SPOOL_CHUNK):
                for plain in decryptor.update(chunk):
                    yield plain
            last = decryptor.finalize()
            if last:
                yield last
        finally:
            await self.close()

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._spool.close)


class RecordService:
    """Health records of patients. ``open()`` before use (opens the blob store with
    ``open_blobs`` and the key wrapper named by the settings unless given), ``close()`` at the
    end."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        doctors: DoctorLookup,
        *,
        blobs: BlobStore | None = None,
        open_blobs: Callable[[Settings], Awaitable[BlobStore]] | None = None,
        keys: KeyWrapper | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._settings = settings
        self._store = store
        self._blobs_given = blobs
        self._keys_given = keys
        self._blobs_opt = blobs
        self._open_blobs = open_blobs
        self._keys_opt = keys
        self._clock = clock
        self._tmp = settings.data_dir / "tmp"
        self.shares = ShareBook(store, doctors, clock)
        self.sealer = Sealer(lambda: self._keys)
        """Seals small secrets (TOTP secrets) under this service's key wrapper, once open."""

    async def open(self) -> None:
        await asyncio.to_thread(self._tmp.mkdir, mode=0o700, parents=True, exist_ok=True)
        if self._blobs_opt is None:
            if self._open_blobs is None:
                raise RuntimeError("RecordService needs blobs= or open_blobs=")
            self._blobs_opt = await self._open_blobs(self._settings)
        if self._keys_opt is None:
            self._keys_opt = await open_key_wrapper(self._settings)

    async def close(self) -> None:
        if self._blobs_opt is not None and self._blobs_given is None:
            blobs, self._blobs_opt = self._blobs_opt, None
            await blobs.close()
        if self._keys_opt is not None and self._keys_given is None:
            keys, self._keys_opt = self._keys_opt, None
            await keys.close()

    @property
    def _blobs(self) -> BlobStore:
        if self._blobs_opt is None:
            raise Unavailable("the record service is not open", code="records_unavailable")
        return self._blobs_opt

    @property
    def _keys(self) -> KeyWrapper:
        if self._keys_opt is None:
            raise Unavailable("the record service is not open", code="records_unavailable")
        return self._keys_opt

    # -- patient: records -------------------------------------------------------------------

    def begin_upload(self, principal: Principal) -> PendingUpload:
        """Start a streamed upload for this patient (see :class:`PendingUpload`)."""
        return PendingUpload(
            patient_id=_require(principal, "patient"),
            store=self._store,
            blobs=self._blobs,
            keys=self._keys,
            max_bytes=self._settings.record_max_bytes,
            clock_ms=self._clock(),
        )

    async def upload(
        self,
        principal: Principal,
        chunks: AsyncIterable[bytes],
        *,
        kind: str | None,
        group: str | None = None,
        title: str | None = None,
        filename: str | None = None,
    ) -> RecordInfo:
        """Upload a whole stream: ``UnsupportedMedia`` by content, ``PayloadTooLarge`` past the
        limit, ``Invalid`` empty or bad fields."""
        check_kind(kind)
        check_group(group)
        upload = self.begin_upload(principal)
        try:
            async for chunk in chunks:
                await upload.write(chunk)
            return await upload.finish(kind=kind, group=group, title=title, filename=filename)
        finally:
            await upload.abort()

    async def _load(self, patient_id: str, record_id: str) -> tuple[Item, Record]:
        if not is_id(record_id):
            raise _record_not_found()
        item = await self._store.get(record_pk(patient_id), record_sk(record_id))
        if item is None:
            raise _record_not_found()
        return item, _record(item)

    async def list_records(
        self,
        principal: Principal,
        *,
        kind: str | None = None,
        group: str | None = None,
        limit: int = LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> RecordPage:
        patient_id = _require(principal, "patient")
        kind = check_kind(kind, required=False)
        group = check_group(group)

        def keep(item: Item) -> bool:
            return (kind is None or item.data.get("kind") == kind) and (
                group is None or item.data.get("group") == group
            )

        items, next_cursor = await scan(
            self._store, record_pk(patient_id), "REC#", cursor=cursor, limit=limit, keep=keep
        )
        return RecordPage(
            items=await self._infos(_record(i) for i in items), next_cursor=next_cursor
        )

    async def get_record(self, principal: Principal, record_id: str) -> RecordInfo:
        _, record = await self._load(_require(principal, "patient"), record_id)
        return (await self._readable(record)).info()

    async def _readable(self, record: Record) -> Record:
        """``record`` with its sealed title and file name opened (its data key unwrapped)."""
        if record.names is None:
            return record
        key = await self._unwrap(record)
        try:
            return open_names(record, key)
        except IntegrityError:
            log.error("record %s: sealed names do not verify", record.id)
            raise RecordIntegrityError(
                "the stored record failed its integrity check; nothing was served"
            ) from None

    async def _infos(self, records: Iterable[Record]) -> list[RecordInfo]:
        opened = await asyncio.gather(*(self._readable(r) for r in records))
        return [r.info() for r in opened]

    async def open_content(self, principal: Principal, record_id: str) -> RecordContent:
        """The owner's download, verified in full before it is returned."""
        _, record = await self._load(_require(principal, "patient"), record_id)
        return await self._verified(record)

    async def delete_record(self, principal: Principal, record_id: str) -> None:
        """Delete the metadata (which destroys the wrapped key) and take the record out of
        every share in one transaction, then delete the blob (best effort: a blob left behind
        by a failure here is unreadable, its key is gone)."""
        patient_id = _require(principal, "patient")
        for _ in range(_RETRIES):
            item, record = await self._load(patient_id, record_id)
            puts = [
                self.shares.without_record(share_item, share, record.id)
                for share_item, share in await self.shares.all(patient_id)
                if record.id in share.record_ids
            ]
            ops: list[Put | Delete] = [Delete(pk=item.pk, sk=item.sk, expect=item.version)]
            # Atomic unless the record sits in more than MAX_TRANSACT - 1 shares.
            step = MAX_TRANSACT - 1
            batches = [puts[i : i + step] for i in range(0, len(puts), step)] or [[]]
            try:
                for batch in batches[:-1]:
                    await self._store.transact(batch)
                await self._store.transact([*batches[-1], *ops])
            except ConditionFailed:
                continue
            break
        else:
            raise Unavailable("the record is being changed concurrently; retry", code="busy")
        try:
            await self._blobs.delete(record.blob_id)
        except Unavailable:
            log.warning("record %s deleted, its blob %s was left behind", record.id, record.blob_id)

    # -- integrity --------------------------------------------------------------------------

    async def _unwrap(self, record: Record) -> bytes:
        if record.key_provider != self._keys.name:
            raise Unavailable(
                "this record was encrypted under another key provider",
                code="key_provider_mismatch",
            )
        context = {"patient_id": record.patient_id, "record_id": record.id}
        try:
            return await self._keys.unwrap(record.wrapped_key, context)
        except IntegrityError:
            log.error("record %s: wrapped key does not verify", record.id)
            raise RecordIntegrityError(
                "the stored record failed its integrity check; nothing was served"
            ) from None

    async def _verified(self, record: Record) -> RecordContent:
        key = await self._unwrap(record)
        spool: IO[bytes] = await asyncio.to_thread(_spool_file, self._tmp)
        try:
            decryptor = SegmentDecryptor(key, record.id)
            size = 0
            digest = hashlib.sha256()
            async for chunk in self._blobs.read(record.blob_id):
                for plain in decryptor.update(chunk):
                    size += len(plain)
                    digest.update(plain)
                await asyncio.to_thread(spool.write, chunk)
            last = decryptor.finalize()
            size += len(last)
            digest.update(last)
            if size != record.size or digest.hexdigest() != record.sha256:
                raise IntegrityError("size or digest differs from the metadata")
            await asyncio.to_thread(spool.flush)
        except (IntegrityError, BlobNotFound) as exc:
            spool.close()
            log.error("record %s failed verification: %s", record.id, type(exc).__name__)
            raise RecordIntegrityError(
                "the stored record failed its integrity check; nothing was served"
            ) from None
        except BaseException:
            spool.close()
            raise
        try:
            info = open_names(record, key).info()
        except IntegrityError:
            spool.close()
            raise RecordIntegrityError(
                "the stored record failed its integrity check; nothing was served"
            ) from None
        return RecordContent(info, spool, key, record.id)

    # -- shares and the access log (patient) -----------------------------------------------

    async def create_share(
        self,
        principal: Principal,
        *,
        doctor_id: str,
        record_ids: Sequence[str] | None,
        groups: Sequence[str] | None,
        expires_at: str,
    ) -> ShareInfo:
        return await self.shares.create(
            _require(principal, "patient"),
            doctor_id=doctor_id,
            record_ids=record_ids,
            groups=groups,
            expires_at=expires_at,
        )

    async def list_shares(
        self,
        principal: Principal,
        *,
        active: bool | None = None,
        limit: int = LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> SharePage:
        return await self.shares.page(
            _require(principal, "patient"), active=active, limit=limit, cursor=cursor
        )

    async def revoke_share(self, principal: Principal, share_id: str) -> None:
        await self.shares.revoke(_require(principal, "patient"), share_id)

    async def access_log(
        self, principal: Principal, *, limit: int = LIMIT_DEFAULT, cursor: str | None = None
    ) -> AccessPage:
        return await self.shares.access_page(
            _require(principal, "patient"), limit=limit, cursor=cursor
        )

    # -- doctor access ----------------------------------------------------------------------

    async def doctor_records(
        self,
        principal: Principal,
        patient_id: str,
        *,
        limit: int = LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> RecordPage:
        """Records of ``patient_id`` an active share covers now; ``NotFound`` (the same answer as
        for a patient that does not exist) when no share of that patient is active for this doctor.
        Each listed record is logged (``list``) before the answer is returned."""
        doctor_id = _require(principal, "doctor")
        if not is_id(patient_id):
            raise _no_shared_records()
        shares = await self.shares.active_for(patient_id, doctor_id)
        if not shares:
            raise _no_shared_records()

        def keep(item: Item) -> bool:
            record = _record(item)
            return any(share.covers(record) for share in shares)

        items, next_cursor = await scan(
            self._store, record_pk(patient_id), "REC#", cursor=cursor, limit=limit, keep=keep
        )
        records = [_record(i) for i in items]
        await self.shares.log(patient_id, doctor_id, "list", [r.id for r in records])
        return RecordPage(items=await self._infos(records), next_cursor=next_cursor)

    async def doctor_content(
        self, principal: Principal, patient_id: str, record_id: str
    ) -> RecordContent:
        """A doctor's download while an active share covers the record, else ``NotFound`` (the same
        answer as for a record that does not exist). Logged (``download``) after verification
        and before the first byte is sent."""
        doctor_id = _require(principal, "doctor")
        if not is_id(patient_id):
            raise _record_not_found()
        _, record = await self._load(patient_id, record_id)
        shares = await self.shares.active_for(patient_id, doctor_id)
        if not any(share.covers(record) for share in shares):
            raise _record_not_found()
        content = await self._verified(record)
        try:
            await self.shares.log(patient_id, doctor_id, "download", [record.id])
        except BaseException:
            await content.close()
            raise
        return content

    # -- LGPD -------------------------------------------------------------------------------

    async def export_user(self, principal: Principal) -> dict[str, Any]:
        """For patients: ``records`` (metadata), ``shares`` and ``access_log``; doctors: none."""
        if principal.role != "patient":
            return {}
        pk = record_pk(principal.user_id)
        now = self._clock()
        records = await self._infos(_record(i) for i in await scan_all(self._store, pk, "REC#"))
        shares = [share.info(now) for _, share in await self.shares.all(principal.user_id)]
        log_items = await scan_all(self._store, pk, "ACCESS#")
        return {
            "records": msgspec.to_builtins(records),
            "shares": msgspec.to_builtins(shares),
            "access_log": msgspec.to_builtins([access_entry(i.data) for i in log_items]),
        }

    async def erase_user(self, principal: Principal) -> None:
        """Delete every blob of the patient, then its records, shares and access log.
        Idempotent; a failure midway leaves what is left for the retry."""
        if principal.role != "patient":
            return
        pk = record_pk(principal.user_id)
        records = await scan_all(self._store, pk, "REC#")
        for item in records:
            await self._blobs.delete(_record(item).blob_id)
        doomed = [
            *records,
            *await scan_all(self._store, pk, "SHARE#"),
            *await scan_all(self._store, pk, INDEX_PREFIX),  # the shares' index and marker
            *await scan_all(self._store, pk, "ACCESS#"),
        ]
        for start in range(0, len(doomed), MAX_TRANSACT):
            batch = doomed[start : start + MAX_TRANSACT]
            await self._store.transact([Delete(pk=i.pk, sk=i.sk) for i in batch])
        log.info("erased the health record of user %s", principal.user_id)


def _spool_file(directory: Path) -> IO[bytes]:
    """An anonymous (already unlinked), owner-only temporary file for verified ciphertext."""
    return tempfile.TemporaryFile(mode="w+b", dir=directory)


def _no_shared_records() -> NotFound:
    return NotFound("no records of this patient are shared with you", code="not_found")


__all__ = ["KINDS", "RecordContent", "RecordIntegrityError", "RecordService"]
