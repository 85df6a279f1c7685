"""The directory adapter of the blob store port (the embedded default).

The adapter writes into ``<root>/.tmp/`` (mode 0600) and commits with ``fsync`` and an atomic
``rename`` to ``<root>/<last two id characters>/<id>``. Temporary files older than a day are
swept when the store opens. File I/O runs in worker threads. A writer keeps what it is given
in memory until ``BUFFER_BYTES`` have come (then writes them in one go) or until commit: a
small record (most are) costs one worker-thread hop for its open, writes, ``fsync``, rename and
directory ``fsync`` instead of one per call, each hop a GIL hand-off from the busy serving
loop. Commit still returns only once the bytes and the rename are durable, in the same order
of system calls as a writer that wrote every chunk at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from typing import TYPE_CHECKING

from engine.records._blobs import READ_CHUNK, BlobNotFound, check_blob_id
from engine.records._blobs import blob_store_unavailable as _unavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from engine.records._blobs import BlobWriter

_STALE_SECONDS = 86400
BUFFER_BYTES = 64 * 1024
"""Bytes a writer holds before writing them out (about one encrypted segment)."""


class _FileWriter:
    def __init__(self, store: DirectoryBlobStore, blob_id: str) -> None:
        self._store = store
        self._blob_id = blob_id
        self._tmp = store.root / ".tmp" / f"{blob_id}.{secrets.token_hex(8)}.part"
        self._fd: int | None = None
        self._pending: list[bytes] = []
        self._buffered = 0
        self._closed = False

    def _write_out(self, pending: list[bytes]) -> None:
        """Create the temporary file if not yet done, and write ``pending`` to it."""
        if self._fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            self._fd = os.open(self._tmp, flags, 0o600)
        for data in pending:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise RuntimeError("writer is closed")
        self._pending.append(data)
        self._buffered += len(data)
        if self._buffered < BUFFER_BYTES:
            return
        pending, self._pending, self._buffered = self._pending, [], 0
        try:
            await asyncio.to_thread(self._write_out, pending)
        except OSError as exc:
            raise _unavailable(exc) from exc

    def _commit(self, pending: list[bytes]) -> None:
        self._write_out(pending)
        assert self._fd is not None
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        final = self._store.path(self._blob_id)
        final.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(self._tmp, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def commit(self) -> None:
        if self._closed:
            raise RuntimeError("writer is closed")
        self._closed = True
        pending, self._pending, self._buffered = self._pending, [], 0
        try:
            await asyncio.to_thread(self._commit, pending)
        except OSError as exc:
            await asyncio.to_thread(self._discard)
            raise _unavailable(exc) from exc

    def _discard(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    async def abort(self) -> None:
        self._closed = True
        self._pending, self._buffered = [], 0
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._discard)


class DirectoryBlobStore:
    """Blobs as files under one directory (mode 0700)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    async def open(cls, root: Path) -> DirectoryBlobStore:
        store = cls(root)
        await asyncio.to_thread(store._prepare)
        return store

    def _prepare(self) -> None:
        (self.root / ".tmp").mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        cutoff = time.time() - _STALE_SECONDS
        for tmp in (self.root / ".tmp").iterdir():
            with contextlib.suppress(OSError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()

    def path(self, blob_id: str) -> Path:
        check_blob_id(blob_id)
        return self.root / blob_id[-2:].lower() / blob_id

    async def open_writer(self, blob_id: str) -> BlobWriter:
        return _FileWriter(self, check_blob_id(blob_id))

    async def read(self, blob_id: str) -> AsyncIterator[bytes]:
        path = self.path(blob_id)
        try:
            fh = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise BlobNotFound(blob_id) from None
        except OSError as exc:
            raise _unavailable(exc) from exc
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(fh.read, READ_CHUNK)
                except OSError as exc:
                    raise _unavailable(exc) from exc
                if not chunk:
                    return
                yield chunk
        finally:
            fh.close()

    async def exists(self, blob_id: str) -> bool:
        return await asyncio.to_thread(self.path(blob_id).is_file)

    async def delete(self, blob_id: str) -> None:
        path = self.path(blob_id)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        return None
