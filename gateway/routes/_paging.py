"""The query parameters of a paged listing (``limit`` and ``cursor``), declared once.

The engine's pager (:mod:`engine.paging`) checks them again for callers that are not routes;
its bounds are the ones written here.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

from engine.paging import LIMIT_DEFAULT, LIMIT_MAX

Limit = Annotated[
    int,
    Parameter(
        ge=1, le=LIMIT_MAX, description=f"page size, 1-{LIMIT_MAX} (default {LIMIT_DEFAULT})"
    ),
]
Cursor = Annotated[
    str | None, Parameter(description="opaque cursor: the previous page's `next_cursor`")
]

__all__ = ["LIMIT_DEFAULT", "Cursor", "Limit"]
