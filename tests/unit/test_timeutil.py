"""Wire times: RFC 3339 in UTC with a ``Z``."""

from __future__ import annotations

import pytest

from engine.timeutil import parse_rfc3339, to_rfc3339


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (1_796_130_000_000, "2026-12-01T13:00:00Z"),
        (1_796_130_000_120, "2026-12-01T13:00:00.120Z"),
    ],
)
def test_times_are_written_in_utc_with_milliseconds_only_when_there_are_some(
    ms: int, text: str
) -> None:
    """Whole seconds carry no fraction, others three digits; both parse back to ``ms``."""
    assert to_rfc3339(ms) == text
    assert parse_rfc3339(text, field="t") == ms


def test_a_time_before_1970_keeps_its_milliseconds() -> None:
    """Half a second before the epoch is 23:59:59.500 of the day before (wire times are never
    that old: ``parse_rfc3339`` refuses them)."""
    assert to_rfc3339(-500) == "1969-12-31T23:59:59.500Z"
