"""File type recognition by content: the declared type and the file name are never trusted.

Accepted: PDF, PNG, JPEG, DICOM and plain UTF-8 text. Everything else is refused with
``UnsupportedMedia``. Executables (ELF, PE, Mach-O, WebAssembly, ``#!`` scripts, Java
classes) and archives (ZIP and everything built on it, gzip, bzip2, xz, zstd, 7z, RAR, tar) are
named explicitly, and checked first, so a polyglot cannot slip through as an accepted type:

* a DICOM file's 128-byte preamble is free-form, which is how PE/DICOM polyglots are built
  (an ``MZ`` header in the preamble makes the file both a valid DICOM and a Windows program);
  a preamble that starts with any executable or archive signature is refused;
* a ``#!`` script is valid UTF-8, but it is an executable, not a document: refused;
* markup that a browser would render as active content (HTML, SVG, XML) is refused as text,
  wherever it opens in the first ``SNIFF_BYTES`` (after a comment or a line of text too).

Plain text is checked over the *whole* file, not only its head: :class:`TextGuard` is fed every
chunk and refuses NUL and control characters other than tab, CR and LF, and invalid UTF-8.
"""

from __future__ import annotations

import codecs
import re

from engine.errors import UnsupportedMedia

SNIFF_BYTES = 4096
"""How many leading bytes :func:`sniff` wants (fewer only when the file is shorter)."""

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
DICOM = "application/dicom"
TEXT = "text/plain; charset=utf-8"

ACCEPTED = (PDF, PNG, JPEG, DICOM, TEXT)

_DICOM_PREAMBLE = 128

# (signature, offset, what) — refused wherever they appear at their offset.
_REFUSED: tuple[tuple[bytes, int, str], ...] = (
    (b"\x7fELF", 0, "ELF executable"),
    (b"MZ", 0, "Windows executable"),
    (b"\xfe\xed\xfa\xce", 0, "Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", 0, "Mach-O executable"),
    (b"\xce\xfa\xed\xfe", 0, "Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", 0, "Mach-O executable"),
    (b"\xca\xfe\xba\xbe", 0, "Mach-O universal binary or Java class"),
    (b"\x00asm", 0, "WebAssembly module"),
    (b"#!", 0, "script"),
    (b"PK\x03\x04", 0, "ZIP archive"),
    (b"PK\x05\x06", 0, "ZIP archive"),
    (b"PK\x07\x08", 0, "ZIP archive"),
    (b"\x1f\x8b", 0, "gzip archive"),
    (b"BZh", 0, "bzip2 archive"),
    (b"\xfd7zXZ\x00", 0, "xz archive"),
    (b"(\xb5/\xfd", 0, "zstd archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "7z archive"),
    (b"Rar!\x1a\x07", 0, "RAR archive"),
    (b"MSCF", 0, "cabinet archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "OLE compound file"),
    (b"ustar", 257, "tar archive"),
)

_MARKUP = re.compile(rb"<[A-Za-z!?/]")
"""A tag, comment, doctype or processing instruction opening anywhere in the sniffed head:
HTML, SVG or XML hidden after a comment or some text would still render as active content,
so a "text" file holding one is refused. A ``<`` before a space or a digit (``PA < 120``,
``<7%``) is text."""

# C0 controls other than \t \n \r, DEL and the C1 range: binary data, never text.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _refused(head: bytes) -> str | None:
    for signature, offset, what in _REFUSED:
        if head[offset : offset + len(signature)] == signature:
            return what
    return None


def _reject(what: str) -> UnsupportedMedia:
    return UnsupportedMedia(
        f"this file type is not accepted ({what}); accepted: PDF, PNG, JPEG, DICOM, plain text",
        code="unsupported_media_type",
    )


def sniff(head: bytes) -> str:
    """The content type of a file from its first bytes (``SNIFF_BYTES``, or all of a shorter
    file); ``UnsupportedMedia`` if it is not an accepted type. Never returns for empty input."""
    if not head:
        raise UnsupportedMedia("empty content has no type", code="unsupported_media_type")
    what = _refused(head)
    if what is not None:
        raise _reject(what)
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[_DICOM_PREAMBLE : _DICOM_PREAMBLE + 4] == b"DICM":
        preamble_what = _refused(head[:_DICOM_PREAMBLE])
        if preamble_what is not None:
            raise _reject(f"DICOM with a {preamble_what} in its preamble")
        return DICOM
    if _MARKUP.search(head):
        raise _reject("HTML, SVG or XML markup")
    guard = TextGuard()
    if guard.feed(head):
        return TEXT
    raise _reject("unrecognised binary data")


class TextGuard:
    """Incremental check that a stream is plain UTF-8 text without binary control characters.

    ``feed`` returns False as soon as the stream stops being text; ``close`` checks that it
    does not end in the middle of a multi-byte character. Chunks may split characters anywhere.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self.ok = True

    def feed(self, chunk: bytes) -> bool:
        if self.ok:
            try:
                text = self._decoder.decode(chunk, final=False)
            except UnicodeDecodeError:
                self.ok = False
            else:
                self.ok = _CONTROL.search(text) is None
        return self.ok

    def close(self) -> bool:
        if self.ok:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.ok = False
        return self.ok


def check_text_chunk(guard: TextGuard, chunk: bytes) -> None:
    """Feed one more chunk of a text upload; ``UnsupportedMedia`` once it is no longer text."""
    if not guard.feed(chunk):
        raise _reject("binary data inside a text file")


def check_text_end(guard: TextGuard) -> None:
    if not guard.close():
        raise _reject("binary data inside a text file")
