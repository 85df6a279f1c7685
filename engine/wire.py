"""OpenAPI text and constraints of request fields whose values the engine checks itself.

msgspec checks a body's types; the engine checks its values (each failure with its own error
code: ``invalid_crm``, ``invalid_rule``...). ``doc`` puts the rule into the OpenAPI document
without msgspec enforcing it a second time with a generic code. Constraint keys are Litestar
``Schema`` attribute names (``pattern``, ``min_length``, ``maximum``, ``format``...); patterns
are anchored, since JSON Schema patterns match anywhere.
"""

from __future__ import annotations

from typing import Any

import msgspec


def doc(description: str, **schema: Any) -> msgspec.Meta:
    """The ``msgspec.Meta`` of a field whose value the engine checks: ``description`` (say
    the error code) and the JSON Schema constraints and ``examples`` of that check."""
    return msgspec.Meta(description=description, extra_json_schema={"extra": schema})


__all__ = ["doc"]
