"""The one pager: page sizes and opaque cursors, as records, booking, directory, waitlist and
the outbox use them."""

from __future__ import annotations

import pytest

from engine.errors import Invalid, error_entries
from engine.paging import after_key, check_limit, decode_cursor, encode_cursor


@pytest.mark.parametrize("limit", [1, 20, 100])
def test_a_page_size_from_1_to_100_is_taken(limit: int) -> None:
    """1 to 100 pass through unchanged."""
    assert check_limit(limit) == limit


@pytest.mark.parametrize("limit", [0, -1, 101])
def test_a_page_size_outside_1_to_100_is_invalid_limit_on_the_limit_field(limit: int) -> None:
    """Outside 1-100 the error is ``invalid_limit`` and names the ``limit`` field."""
    with pytest.raises(Invalid) as info:
        check_limit(limit)
    assert info.value.code == "invalid_limit"
    assert [e["key"] for e in error_entries(info.value)] == ["limit"]


@pytest.mark.parametrize("raw", [b"", b"APPT#1", b'{"o":20}', bytes(range(256))])
def test_a_cursor_round_trips_without_padding(raw: bytes) -> None:
    """What goes in comes back; the text is URL-safe and carries no ``=`` padding."""
    cursor = encode_cursor(raw)
    assert not set(cursor) & set("=+/")
    assert decode_cursor(cursor) == raw


def test_a_sort_key_cursor_resumes_after_that_key() -> None:
    """A cursor of a sort key under the prefix gives that key back; none gives None."""
    assert after_key(encode_cursor("REC#0042"), "REC#") == "REC#0042"
    assert after_key(None, "REC#") is None
    assert after_key("", "REC#") is None


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("%%%", id="not-base64"),
        pytest.param("A", id="bad-length"),
        pytest.param(encode_cursor("SHARE#1"), id="other-prefix"),
        pytest.param(encode_cursor(b"\xff\xfe"), id="not-utf8"),
        pytest.param(encode_cursor("REC#" + "x" * 300), id="too-long"),
    ],
)
def test_a_forged_cursor_is_invalid_cursor(cursor: str) -> None:
    """Garbage, another prefix's key or an over-long key is ``invalid_cursor`` on ``cursor``."""
    with pytest.raises(Invalid) as info:
        after_key(cursor, "REC#")
    assert info.value.code == "invalid_cursor"
    assert [e["key"] for e in error_entries(info.value)] == ["cursor"]
