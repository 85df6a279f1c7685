"""Segmented AES-256-GCM of record bytes and the local key wrapper."""

from __future__ import annotations

import os
import random

import pytest

from engine.records import (
    IntegrityError,
    LocalKeyWrapper,
    SegmentDecryptor,
    SegmentEncryptor,
    new_data_key,
)
from engine.records._crypto import HEADER_BYTES, TAG_BYTES

SEG = 1024  # small segments make boundary cases cheap; the format is the same


def encrypt(key: bytes, plaintext: bytes, record_id: str = "REC1", chunk: int = 700) -> bytes:
    enc = SegmentEncryptor(key, record_id, segment_size=SEG)
    out = [enc.header()]
    for i in range(0, len(plaintext), chunk):
        out.extend(enc.update(plaintext[i : i + chunk]))
    out.append(enc.finalize())
    return b"".join(out)


def decrypt(key: bytes, blob: bytes, record_id: str = "REC1", chunk: int = 333) -> bytes:
    dec = SegmentDecryptor(key, record_id)
    out: list[bytes] = []
    for i in range(0, len(blob), chunk):
        out.extend(dec.update(blob[i : i + chunk]))
    out.append(dec.finalize())
    return b"".join(out)


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 17])
def test_round_trip_at_every_segment_boundary(size: int) -> None:
    """Any size, any chunking in and out, decrypts to exactly the plaintext."""
    key = new_data_key()
    plaintext = os.urandom(size)
    blob = encrypt(key, plaintext, chunk=random.randint(1, 2 * SEG))
    assert len(blob) == HEADER_BYTES + size + TAG_BYTES * max(1, -(-size // SEG))
    assert decrypt(key, blob, chunk=random.randint(1, 3 * SEG)) == plaintext


def test_every_flipped_byte_is_detected() -> None:
    """Flipping any single byte of the blob (header, body or tag) fails verification."""
    key = new_data_key()
    blob = encrypt(key, os.urandom(2 * SEG + 100))
    for position in range(len(blob)):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(IntegrityError):
            decrypt(key, bytes(tampered))


@pytest.mark.parametrize("cut", [1, TAG_BYTES, 100], ids=["1-byte", "a-tag", "100-bytes"])
def test_a_truncated_blob_is_detected(cut: int) -> None:
    """Dropping bytes from the end fails, wherever the cut falls."""
    key = new_data_key()
    blob = encrypt(key, os.urandom(2 * SEG + 100))
    with pytest.raises(IntegrityError):
        decrypt(key, blob[:-cut])


def test_truncation_at_a_segment_boundary_is_detected() -> None:
    """Dropping whole final segments fails: the last-segment flag is authenticated."""
    key = new_data_key()
    blob = encrypt(key, os.urandom(3 * SEG))
    sealed = SEG + TAG_BYTES
    with pytest.raises(IntegrityError):
        decrypt(key, blob[: HEADER_BYTES + 2 * sealed])
    with pytest.raises(IntegrityError):
        decrypt(key, blob[:HEADER_BYTES])


def test_reordered_or_duplicated_segments_are_detected() -> None:
    """Swapping or repeating segments fails: the counter is in the nonce."""
    key = new_data_key()
    blob = encrypt(key, os.urandom(3 * SEG + 5))
    sealed = SEG + TAG_BYTES
    head, body = blob[:HEADER_BYTES], blob[HEADER_BYTES:]
    segs = [body[i : i + sealed] for i in range(0, len(body), sealed)]
    with pytest.raises(IntegrityError):
        decrypt(key, head + segs[1] + segs[0] + segs[2] + segs[3])
    with pytest.raises(IntegrityError):
        decrypt(key, head + segs[0] + segs[0] + segs[1] + segs[2] + segs[3])


def test_appended_bytes_are_detected() -> None:
    """Bytes after the final segment fail verification."""
    key = new_data_key()
    blob = encrypt(key, b"short record")
    with pytest.raises(IntegrityError):
        decrypt(key, blob + b"\x00" * 20)


def test_a_blob_moved_under_another_record_does_not_decrypt() -> None:
    """The record id is bound into every segment."""
    key = new_data_key()
    blob = encrypt(key, b"exam results", record_id="REC1")
    with pytest.raises(IntegrityError):
        decrypt(key, blob, record_id="REC2")


def test_the_wrong_key_does_not_decrypt() -> None:
    """Another key fails verification instead of returning garbage."""
    blob = encrypt(new_data_key(), b"exam results")
    with pytest.raises(IntegrityError):
        decrypt(new_data_key(), blob)


def test_same_plaintext_twice_gives_different_ciphertexts() -> None:
    """Fresh keys and nonces: identical files are not linkable by their blobs."""
    plaintext = b"identical file\n" * 500
    a = encrypt(new_data_key(), plaintext)
    b = encrypt(new_data_key(), plaintext)
    assert a != b
    assert a[HEADER_BYTES:] != b[HEADER_BYTES:]


def test_the_blob_does_not_contain_the_plaintext() -> None:
    """No 16-byte window of the plaintext appears in the blob."""
    plaintext = b"PATIENT HIV POSITIVE " * 200
    blob = encrypt(new_data_key(), plaintext)
    assert b"PATIENT" not in blob
    assert b"HIV POSITIVE" not in blob


async def test_local_key_wrapper_round_trip_and_context_binding() -> None:
    """A wrapped key unwraps only with the same master key and encryption context."""
    master = os.urandom(32)
    wrapper = LocalKeyWrapper(master)
    context = {"patient_id": "P1", "record_id": "R1"}
    key, wrapped = await wrapper.generate(context)
    assert len(key) == 32
    assert key not in wrapped
    assert await wrapper.unwrap(wrapped, context) == key
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(wrapped, {"patient_id": "P1", "record_id": "R2"})
    with pytest.raises(IntegrityError):
        await LocalKeyWrapper(os.urandom(32)).unwrap(wrapped, context)
    tampered = bytearray(wrapped)
    tampered[-1] ^= 1
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(bytes(tampered), context)
    with pytest.raises(IntegrityError):
        await wrapper.unwrap(b"\x01garbage", context)


def test_a_tampered_segment_size_is_refused_at_the_header() -> None:
    """A header claiming a huge segment is refused before any segment is buffered."""
    key = new_data_key()
    blob = bytearray(encrypt(key, b"x" * 1000))
    blob[4:8] = (2**30).to_bytes(4, "big")
    decryptor = SegmentDecryptor(key, "REC1")
    with pytest.raises(IntegrityError):
        decryptor.update(bytes(blob[:HEADER_BYTES]))
