"""Dangerous names and hidden markup never reach a doctor's disk (issue 14, finding 7)."""

from __future__ import annotations

import pytest

from engine.errors import UnsupportedMedia
from engine.records import clean_filename, sniff

TEXT = "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("raw", "content_type", "served"),
    [
        pytest.param("laudo.bat", TEXT, "laudo.txt", id="bat-as-text"),
        pytest.param("exame.pdf.js", TEXT, "exame.pdf.txt", id="double-extension"),
        pytest.param("resultado.html", TEXT, "resultado.txt", id="html-name"),
        pytest.param("raio-x.exe", "image/png", "raio-x.png", id="exe-name-png-bytes"),
        pytest.param("exame.pdf", "application/pdf", "exame.pdf", id="honest-pdf"),
        pytest.param("notas", TEXT, "notas.txt", id="no-extension"),
        pytest.param("../../etc/passwd", TEXT, "passwd.txt", id="path"),
        pytest.param("...", TEXT, "record.txt", id="nothing-left"),
        pytest.param("a" * 300 + ".pdf", "application/pdf", "a" * 251 + ".pdf", id="long"),
    ],
)
def test_the_served_extension_is_the_detected_type(
    raw: str, content_type: str, served: str
) -> None:
    """The stored and served name ends in the extension of the type found in the bytes."""
    assert clean_filename(raw, content_type) == served
    assert clean_filename(served, content_type) == served  # idempotent: applied on serving


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<!-- a note --><svg onload=alert(1)>", id="svg-after-comment"),
        pytest.param(b"Resultado normal.\n\n<script>alert(1)</script>", id="script-after-text"),
        pytest.param(b"x" * 3000 + b"<html><body>hi", id="html-deep-in-the-head"),
        pytest.param(b"<?xml version='1.0'?><x/>", id="xml"),
    ],
)
def test_markup_anywhere_in_the_head_of_a_text_file_is_refused(body: bytes) -> None:
    """A "text" file with a tag, comment or XML declaration in its first 4 KiB is 415."""
    with pytest.raises(UnsupportedMedia):
        sniff(body)


def test_angle_brackets_of_plain_text_stay_text() -> None:
    """Comparisons in a clinical note (``PA < 120``, ``HbA1c <7%``) are not markup."""
    assert sniff(b"PA < 120 mmHg; HbA1c <7% e glicemia 3 > 2") == TEXT
