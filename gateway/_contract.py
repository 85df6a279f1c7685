"""What the OpenAPI document says beyond what Litestar infers from the handlers.

* ``additionalProperties: false`` on every request body Struct declared with
  ``forbid_unknown_fields`` (and the Structs nested in it): the server answers an unknown
  field with 422 ``unknown_field``, so the schema says so.

Applied once to the app's generated document, so a route added later gets it too.
"""

from __future__ import annotations

import types
import typing
from typing import TYPE_CHECKING, Any, Union

import msgspec

if TYPE_CHECKING:
    from litestar import Litestar


def _structs(tp: Any, seen: set[type[msgspec.Struct]]) -> None:
    """Every Struct reachable from the annotation ``tp`` (unions, lists, nested fields)."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if tp in seen:
            return
        seen.add(tp)
        for field in msgspec.structs.fields(tp):
            _structs(field.type, seen)
        return
    if typing.get_origin(tp) in (Union, types.UnionType, list, typing.Annotated):
        for arg in typing.get_args(tp):
            _structs(arg, seen)


def request_structs(app: Litestar) -> set[type[msgspec.Struct]]:
    seen: set[type[msgspec.Struct]] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            data = handler.parsed_data_field
            if data is not None:
                _structs(data.annotation, seen)
    return seen


def tighten(app: Litestar) -> None:
    """Mark the closed request bodies of ``app``'s OpenAPI document."""
    schemas = app.openapi_schema.components.schemas or {}
    closed = {s.__name__ for s in request_structs(app) if s.__struct_config__.forbid_unknown_fields}
    for name, schema in schemas.items():
        title = getattr(schema, "title", None) or name
        if title in closed:
            schema.additional_properties = False
