"""Record type recognition: by bytes only; executables and archives refused explicitly."""

from __future__ import annotations

import pytest

from engine.errors import UnsupportedMedia
from engine.records import SNIFF_BYTES, TextGuard, sniff
from engine.records._sniff import check_text_chunk

PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40
DICOM = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"\x00" * 40
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56
PE = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 56 + b"This program cannot be run in DOS mode"
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40
GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\x00" * 20
SCRIPT = b"#!/bin/sh\nrm -rf --no-preserve-root /\n"
TAR = b"evil.txt".ljust(257, b"\x00") + b"ustar\x0000" + b"\x00" * 300


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        pytest.param(PDF, "application/pdf", id="pdf"),
        pytest.param(PNG, "image/png", id="png"),
        pytest.param(JPEG, "image/jpeg", id="jpeg"),
        pytest.param(DICOM, "application/dicom", id="dicom"),
        pytest.param(
            b"Hemograma completo\r\nHb 13.5 g/dL\tok\n", "text/plain; charset=utf-8", id="text"
        ),
        pytest.param(
            "Pressão arterial 12/8 — ótimo ✓\n".encode(), "text/plain; charset=utf-8", id="utf8"
        ),
    ],
)
def test_accepted_types_are_recognised_by_their_bytes(head: bytes, expected: str) -> None:
    """PDF, PNG, JPEG, DICOM and UTF-8 text are recognised by content."""
    assert sniff(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(ELF, id="elf"),
        pytest.param(PE, id="pe-mz"),
        pytest.param(ZIP, id="zip"),
        pytest.param(b"PK\x05\x06" + b"\x00" * 18, id="empty-zip"),
        pytest.param(GZIP, id="gzip"),
        pytest.param(b"BZh91AY&SY" + b"\x00" * 10, id="bzip2"),
        pytest.param(b"\xfd7zXZ\x00\x00" + b"\x00" * 10, id="xz"),
        pytest.param(b"7z\xbc\xaf\x27\x1c" + b"\x00" * 10, id="7z"),
        pytest.param(b"Rar!\x1a\x07\x01\x00" + b"\x00" * 10, id="rar"),
        pytest.param(TAR, id="tar"),
        pytest.param(b"\xcf\xfa\xed\xfe" + b"\x00" * 28, id="mach-o"),
        pytest.param(b"\x00asm\x01\x00\x00\x00", id="wasm"),
        pytest.param(SCRIPT, id="shell-script"),
        pytest.param(b"#!/usr/bin/env python3\nprint('hi')\n", id="python-script"),
    ],
)
def test_executables_and_archives_are_refused(head: bytes) -> None:
    """Executables, scripts and archives are 415, even though some are valid text."""
    with pytest.raises(UnsupportedMedia):
        sniff(head)


def test_a_dicom_whose_preamble_is_an_executable_is_refused() -> None:
    """A PE/DICOM polyglot (MZ in the 128-byte preamble) is refused, not taken as DICOM."""
    polyglot = PE[:128].ljust(128, b"\x00") + b"DICM" + b"\x00" * 40
    with pytest.raises(UnsupportedMedia):
        sniff(polyglot)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"<!DOCTYPE html><script>alert(1)</script>", id="html"),
        pytest.param(b"  <svg xmlns='http://www.w3.org/2000/svg' onload='x()'/>", id="svg"),
        pytest.param(b"\xef\xbb\xbf<?xml version='1.0'?><a/>", id="xml-with-bom"),
    ],
)
def test_active_markup_is_not_plain_text(head: bytes) -> None:
    """HTML, SVG and XML are refused rather than stored as text."""
    with pytest.raises(UnsupportedMedia):
        sniff(head)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"hello\x00world", id="nul"),
        pytest.param(b"abc\x1b[31mred", id="escape"),
        pytest.param(b"caf\xe9 latin-1", id="invalid-utf8"),
        pytest.param(bytes(range(256)), id="all-bytes"),
        pytest.param(b"GIF89a\x01\x00\x01\x00\x80\x00\x00", id="gif"),
    ],
)
def test_binary_data_is_refused(head: bytes) -> None:
    """Anything that is neither an accepted format nor clean UTF-8 text is 415."""
    with pytest.raises(UnsupportedMedia):
        sniff(head)


def test_the_name_plays_no_part() -> None:
    """Sniffing sees only bytes: an executable is refused whatever it would be called."""
    assert "name" not in sniff.__code__.co_varnames
    with pytest.raises(UnsupportedMedia):
        sniff(PE)


def test_text_head_cut_inside_a_character_is_still_text() -> None:
    """A head that ends mid-way through a multi-byte character is not mistaken for binary."""
    text = ("ç" * SNIFF_BYTES).encode()[: SNIFF_BYTES - 1]
    assert sniff(text) == "text/plain; charset=utf-8"


def test_text_guard_accepts_characters_split_across_chunks() -> None:
    """The whole-file text check handles chunk boundaries inside characters."""
    data = "ação ✓ 🙂\n".encode() * 100
    guard = TextGuard()
    for i in range(0, len(data), 3):
        assert guard.feed(data[i : i + 3])
    assert guard.close()


def test_text_guard_refuses_binary_after_a_text_head() -> None:
    """A text file that turns binary after its head is refused when the binary arrives."""
    guard = TextGuard()
    check_text_chunk(guard, b"plain words\n" * 1000)
    with pytest.raises(UnsupportedMedia):
        check_text_chunk(guard, ELF)


def test_text_guard_refuses_a_truncated_final_character() -> None:
    """A text file ending in the middle of a UTF-8 sequence is not valid text."""
    guard = TextGuard()
    assert guard.feed("olá".encode()[:-1])
    assert not guard.close()
