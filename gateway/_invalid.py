"""The second validation pass: every invalid field of a body, on the error path only.

msgspec stops at the first error, which is right for the fast path (a valid body is decoded
once, with no extra work). When decoding fails, this pass walks the already-parsed JSON
against the body's Struct field by field, so the problem lists every missing, unknown and
mistyped field in ``errors[]``; for bodies whose values the engine checks (account data), the
well-typed values go through those same rules too. Each entry is
``{key, message, code, source: "body"}``.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union

import msgspec

from engine.accounts import validators
from engine.accounts.models import VALUE_CHECKED
from engine.errors import Invalid, error_entries

_MISSING = "missing_field"
_UNKNOWN = "unknown_field"
_TYPE = "invalid_type"


def _entry(key: str, message: str, code: str) -> dict[str, Any]:
    return {"key": key or "body", "message": message, "code": code, "source": "body"}


def _struct_of(tp: Any) -> tuple[type[msgspec.Struct] | None, bool]:
    """The Struct inside ``tp`` (alone or in a union with None/UNSET), and whether None is
    allowed."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp, False
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = typing.get_args(tp)
        structs = [a for a in args if isinstance(a, type) and issubclass(a, msgspec.Struct)]
        if len(structs) == 1:
            return structs[0], type(None) in args
    return None, False


def _list_item(tp: Any) -> type[msgspec.Struct] | None:
    for candidate in (tp, *typing.get_args(tp)):
        if typing.get_origin(candidate) is list:
            (item,) = typing.get_args(candidate) or (None,)
            struct, _ = _struct_of(item)
            return struct
    return None


def _walk(
    tp: Any, value: Any, key: str, errors: list[dict[str, Any]], leaves: dict[str, Any]
) -> None:
    struct, nullable = _struct_of(tp)
    if struct is not None and not (value is None and nullable):
        if not isinstance(value, dict):
            errors.append(_entry(key, f"Expected `object`, got `{_kind(value)}`", _TYPE))
            return
        _walk_struct(struct, value, key, errors, leaves)
        return
    item = _list_item(tp)
    if item is not None and isinstance(value, list):
        for i, element in enumerate(value):
            _walk(item, element, f"{key}[{i}]", errors, leaves)
        return
    try:
        leaves[key] = msgspec.convert(value, tp, strict=False, str_keys=True)
    except msgspec.ValidationError as exc:
        message, _, _ = str(exc).partition(" - ")
        errors.append(_entry(key, message, _TYPE))


def _walk_struct(
    struct: type[msgspec.Struct],
    value: dict[str, Any],
    key: str,
    errors: list[dict[str, Any]],
    leaves: dict[str, Any],
) -> None:
    prefix = f"{key}." if key else ""
    fields = msgspec.structs.fields(struct)
    names = {f.encode_name for f in fields}
    for f in fields:
        if f.encode_name in value:
            _walk(f.type, value[f.encode_name], prefix + f.encode_name, errors, leaves)
        elif f.required:
            errors.append(_entry(prefix + f.encode_name, "Object missing required field", _MISSING))
    if struct.__struct_config__.forbid_unknown_fields:
        for name in value:
            if name not in names:
                errors.append(_entry(prefix + str(name), "Object contains unknown field", _UNKNOWN))


def _kind(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "str",
        bool: "bool",
        int: "int",
        float: "float",
    }.get(type(value), "null")


def body_errors(tp: Any, body: Any) -> list[dict[str, Any]]:
    """Every invalid field of ``body`` (parsed JSON) for the body type ``tp``; [] if none is
    found (the caller then keeps msgspec's own error)."""
    errors: list[dict[str, Any]] = []
    leaves: dict[str, Any] = {}
    _walk(tp, body, "", errors, leaves)
    struct, _ = _struct_of(tp)
    if struct in VALUE_CHECKED:
        checked = {k: v for k, v in leaves.items() if k in validators.RULES}
        try:
            validators.check_all(checked)
        except Invalid as exc:
            errors.extend({**e, "source": "body"} for e in error_entries(exc))
    return errors
