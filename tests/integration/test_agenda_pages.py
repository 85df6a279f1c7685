"""Finding 10 (issue 14): the doctor's own agenda (``GET /v1/me/slots``) came whole, however
many slots the range held. It comes a page at a time, each page one bounded read of the
doctor's slot index (real redis-server, single node and cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.booking import BookingService
from engine.errors import Invalid
from engine.timeutil import to_rfc3339
from tests.integration.conftest import Clock, doctor, slots_of

HOUR = 3_600_000
MIN = 60_000


async def test_the_own_agenda_comes_in_bounded_pages(booking: BookingService, clock: Clock) -> None:
    """250 slots, pages of 20: each page reads at most a page and a slack of the index, the
    pages follow each other in start order with no slot twice or missed, the last has no
    cursor; a bad limit or cursor is 422."""
    doc = doctor()
    start = clock.now + 24 * HOUR
    spans = [(start + i * HOUR, start + i * HOUR + 50 * MIN) for i in range(250)]
    created = await slots_of(booking, doc, spans)
    seen_entries: list[int] = []
    real = booking.slots._read

    async def counting(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        seen_entries.append(result[1])
        return result

    booking.slots._read = counting  # type: ignore[method-assign]
    lo, hi = to_rfc3339(start), to_rfc3339(start + 300 * HOUR)
    ids: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await booking.own_slots_page(doc, lo, hi, limit=20, cursor=cursor)
        pages += 1
        ids += [s.id for s in page.items]
        assert len(page.items) == (20 if page.next_cursor else 10)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 13
    assert ids == created
    assert max(seen_entries) <= 20 + 1 + 8
    for bad in ({"limit": 0}, {"limit": 101}, {"cursor": "bm9wZQ"}, {"cursor": "!!"}):
        with pytest.raises(Invalid):
            await booking.own_slots_page(doc, lo, hi, **bad)  # type: ignore[arg-type]
