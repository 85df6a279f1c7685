"""Streaming authenticated encryption of record bytes: AES-256-GCM in segments.

A blob is a 16-byte header followed by segments. Each segment holds ``segment_size`` bytes of
plaintext (the last one 1..``segment_size``; 0 only for an empty stream) plus a 16-byte GCM tag::

    header  = b"HMR1" | segment_size (u32 BE) | nonce prefix (7 random bytes) | 0x00
    nonce_i = nonce prefix (7) | i (u32 BE) | 0x01 if segment i is the last else 0x00
    aad     = header | record id (UTF-8)

This is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): the counter in the
nonce detects reordered, dropped or duplicated segments, the last-segment flag detects a blob
truncated at a segment boundary or extended past its end, and the header and record id in the
associated data bind every segment to its layout and to its record (a blob moved under another
record fails). The data key is fresh per record (see ``_keys``), so a nonce never repeats under
one key; the random prefix is defence in depth.

Decryption raises ``IntegrityError`` on the first segment that does not verify; callers that
must not release unverified plaintext verify the whole blob first (see ``RecordService``).
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"HMR1"
HEADER_BYTES = 16
TAG_BYTES = 16
KEY_BYTES = 32
SEGMENT_SIZE = 64 * 1024
"""Plaintext bytes per segment: the unit of memory of the upload and download paths."""

_PREFIX_BYTES = 7
_MAX_SEGMENTS = 2**32


class IntegrityError(Exception):
    """Stored bytes do not verify: tampered, truncated, reordered or not this record's."""


def _header(segment_size: int, prefix: bytes) -> bytes:
    return MAGIC + struct.pack(">I", segment_size) + prefix + b"\x00"


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= _MAX_SEGMENTS:
        raise IntegrityError("too many segments")
    return prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")


def new_data_key() -> bytes:
    """A fresh random AES-256 key."""
    return os.urandom(KEY_BYTES)


class SegmentEncryptor:
    """Encrypts a stream chunk by chunk; holds at most one segment of plaintext.

    ``header()`` first, then ``update(chunk)`` for every chunk (each returns the segments that
    became complete), then ``finalize()`` once (the last segment).
    """

    def __init__(self, key: bytes, record_id: str, *, segment_size: int = SEGMENT_SIZE) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("AES-256 needs a 32-byte key")
        if not 0 < segment_size < 2**31:
            raise ValueError("bad segment size")
        self._aead = AESGCM(key)
        self._segment = segment_size
        self._prefix = os.urandom(_PREFIX_BYTES)
        self._head = _header(segment_size, self._prefix)
        self._aad = self._head + record_id.encode()
        self._buffer = bytearray()
        self._index = 0
        self._done = False

    def header(self) -> bytes:
        return self._head

    def _seal(self, plaintext: bytes, last: bool) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, last), plaintext, self._aad)
        self._index += 1
        return sealed

    def update(self, chunk: bytes) -> list[bytes]:
        if self._done:
            raise RuntimeError("encryptor already finalized")
        self._buffer += chunk
        out: list[bytes] = []
        # Keep at least one byte back: only finalize() knows which segment is the last.
        while len(self._buffer) > self._segment:
            out.append(self._seal(bytes(self._buffer[: self._segment]), last=False))
            del self._buffer[: self._segment]
        return out

    def finalize(self) -> bytes:
        if self._done:
            raise RuntimeError("encryptor already finalized")
        self._done = True
        last = self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        return last


class SegmentDecryptor:
    """Decrypts and verifies a blob fed in chunks of any size; holds at most one segment.

    ``update(chunk)`` returns verified plaintext of the segments completed so far;
    ``finalize()`` verifies the last segment and that the blob ends exactly there. Any failure
    raises ``IntegrityError``, and the decryptor is then unusable.
    """

    def __init__(self, key: bytes, record_id: str) -> None:
        if len(key) != KEY_BYTES:
            raise IntegrityError("data key has the wrong length")
        self._aead = AESGCM(key)
        self._record = record_id.encode()
        self._buffer = bytearray()
        self._prefix = b""
        self._aad = b""
        self._sealed = 0
        self._index = 0
        self._failed = False
        self._done = False

    def _open(self, sealed: bytes, last: bool) -> bytes:
        try:
            plain = self._aead.decrypt(_nonce(self._prefix, self._index, last), sealed, self._aad)
        except InvalidTag:
            self._failed = True
            raise IntegrityError("a segment does not verify") from None
        self._index += 1
        return plain

    def _read_header(self) -> bool:
        if self._sealed:
            return True
        if len(self._buffer) < HEADER_BYTES:
            return False
        head = bytes(self._buffer[:HEADER_BYTES])
        del self._buffer[:HEADER_BYTES]
        (segment,) = struct.unpack(">I", head[4:8])
        # The segment size is read from the blob, so it is capped: a tampered header must not
        # make the reader buffer a whole blob before the first tag check fails.
        if head[:4] != MAGIC or head[15:16] != b"\x00" or not 0 < segment <= SEGMENT_SIZE:
            self._failed = True
            raise IntegrityError("not a record blob")
        self._prefix = head[8:15]
        self._aad = head + self._record
        self._sealed = segment + TAG_BYTES
        return True

    def update(self, chunk: bytes) -> list[bytes]:
        if self._failed or self._done:
            raise IntegrityError("decryptor is no longer usable")
        self._buffer += chunk
        out: list[bytes] = []
        if not self._read_header():
            return out
        # A full segment followed by more bytes cannot be the last one.
        while len(self._buffer) > self._sealed:
            out.append(self._open(bytes(self._buffer[: self._sealed]), last=False))
            del self._buffer[: self._sealed]
        return out

    def finalize(self) -> bytes:
        if self._failed or self._done:
            raise IntegrityError("decryptor is no longer usable")
        self._done = True
        if not self._read_header() or len(self._buffer) < TAG_BYTES:
            self._failed = True
            raise IntegrityError("blob is truncated")
        plain = self._open(bytes(self._buffer), last=True)
        self._buffer.clear()
        return plain
