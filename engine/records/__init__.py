"""Health record (prontuário): encrypted uploads and time-limited sharing with doctors.

* ``_sniff``: type by content (PDF, PNG, JPEG, DICOM, plain text; executables and archives
  refused by name);
* ``_crypto``: AES-256-GCM in 64 KiB segments (STREAM construction), a fresh key per record;
* ``_keys``: master key providers wrapping the data keys (local key file, AWS KMS);
* ``_sealed``: small secrets (TOTP secrets) sealed under a wrapped data key of their own;
* ``_blobs``: the blob store port; ``_files`` and ``_s3``: its directory and S3 adapters,
  chosen by :func:`open_blob_store`;
* ``_model``: stored and public shapes, the store key layout and field validators;
* ``_upload``: one streamed upload; ``_shares``: shares and the access log;
* ``_service``: :class:`RecordService`, the facade the gateway and the engine use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.records._blobs import BlobNotFound, BlobStore, BlobWriter
from engine.records._crypto import (
    SEGMENT_SIZE,
    IntegrityError,
    SegmentDecryptor,
    SegmentEncryptor,
    new_data_key,
)
from engine.records._files import DirectoryBlobStore
from engine.records._keys import KeyWrapper, KmsKeyWrapper, LocalKeyWrapper, open_key_wrapper
from engine.records._model import (
    GROUP_PATTERN,
    KIND_PATTERN,
    KINDS,
    AccessEntry,
    AccessPage,
    Kind,
    RecordInfo,
    RecordPage,
    ShareInfo,
    SharePage,
    check_upload_fields,
    clean_filename,
)
from engine.records._s3 import S3BlobStore
from engine.records._sealed import SealedValue, Sealer
from engine.records._service import RecordContent, RecordIntegrityError, RecordService
from engine.records._sniff import ACCEPTED, SNIFF_BYTES, TextGuard, sniff
from engine.records._upload import PendingUpload

if TYPE_CHECKING:
    from engine.config import Settings


async def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store named by ``HEALTHMED_BLOB_URL``: ``file://<dir>`` or ``s3://bucket/prefix``."""
    url = settings.blob_url
    if url.startswith("file://"):
        return await DirectoryBlobStore.open(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return await S3BlobStore.open(bucket, prefix)
    raise ValueError(f"unsupported blob url: {url!r}")


__all__ = [
    "ACCEPTED",
    "GROUP_PATTERN",
    "KINDS",
    "KIND_PATTERN",
    "SEGMENT_SIZE",
    "SNIFF_BYTES",
    "AccessEntry",
    "AccessPage",
    "BlobNotFound",
    "BlobStore",
    "BlobWriter",
    "DirectoryBlobStore",
    "IntegrityError",
    "KeyWrapper",
    "Kind",
    "KmsKeyWrapper",
    "LocalKeyWrapper",
    "PendingUpload",
    "RecordContent",
    "RecordInfo",
    "RecordIntegrityError",
    "RecordPage",
    "RecordService",
    "S3BlobStore",
    "SealedValue",
    "Sealer",
    "SegmentDecryptor",
    "SegmentEncryptor",
    "ShareInfo",
    "SharePage",
    "TextGuard",
    "check_upload_fields",
    "clean_filename",
    "new_data_key",
    "open_blob_store",
    "open_key_wrapper",
    "sniff",
]
