"""The blob store port: what the record service needs of a place for immutable bytes.

Blobs are opaque, immutable byte strings named by server-generated ids (``[0-9A-Za-z]``, at
most 64 characters): a client's file name never reaches a path or an object key. A blob becomes
visible only when its writer commits, all at once; an aborted or crashed write leaves nothing
under the blob's name. The adapters are :mod:`engine.records._files` (a directory, the embedded
default) and :mod:`engine.records._s3`; :func:`engine.records.open_blob_store` picks one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

from engine.errors import Unavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

READ_CHUNK = 64 * 1024
_ID = re.compile(r"[0-9A-Za-z]{1,64}")


class BlobNotFound(Exception):
    """No committed blob has this id."""


def check_blob_id(blob_id: str) -> str:
    if not _ID.fullmatch(blob_id):
        raise ValueError("blob ids are 1-64 ASCII letters and digits")
    return blob_id


class BlobWriter(Protocol):
    """One blob being written. ``commit`` or ``abort`` exactly once (abort is idempotent)."""

    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None:
        """Make the blob visible under its id, durably."""

    async def abort(self) -> None:
        """Discard everything written; safe to call after a failed write or twice."""


class BlobStore(Protocol):
    """Immutable blobs by id. I/O failures raise ``Unavailable``."""

    async def open_writer(self, blob_id: str) -> BlobWriter: ...

    def read(self, blob_id: str) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks of at most ``READ_CHUNK``; ``BlobNotFound`` if absent
        (raised by the first iteration)."""

    async def exists(self, blob_id: str) -> bool: ...

    async def delete(self, blob_id: str) -> None:
        """Remove the blob; nothing happens if it is absent."""

    async def close(self) -> None: ...


def blob_store_unavailable(exc: Exception) -> Unavailable:
    """What an adapter raises when its I/O fails (503 ``blob_store_unavailable``)."""
    return Unavailable(
        f"the blob store failed ({type(exc).__name__})", code="blob_store_unavailable"
    )
