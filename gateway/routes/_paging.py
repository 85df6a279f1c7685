"""The query parameters of a paged listing (``limit`` and ``cursor``), declared once.

The engine's pager (:mod:`engine.paging`) checks them again for callers that are not routes;
its bounds are the ones written here. The contract words them two ways, and each route keeps
its own: ``Limit`` (bounded by Litestar before the handler runs) with ``Cursor``, and
``PagerLimit`` (bounded by the engine's pager: 422 ``invalid_limit``) with ``NextCursor``.
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
PagerLimit = Annotated[
    int,
    Parameter(
        description=f"page size, 1-{LIMIT_MAX} (422 `invalid_limit`)",
        schema_extra={"minimum": 1, "maximum": LIMIT_MAX},
    ),
]
NextCursor = Annotated[str | None, Parameter(description="next_cursor of the last page")]

__all__ = ["LIMIT_DEFAULT", "Cursor", "Limit", "NextCursor", "PagerLimit"]
