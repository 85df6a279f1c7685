"""Terraform files parsed with python-hcl2 (Terraform itself is not installed here)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import hcl2

from tests.support import ROOT

TERRAFORM = ROOT / "infra" / "terraform"


def tf_files() -> list[Path]:
    return sorted(TERRAFORM.rglob("*.tf"))


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return dict(hcl2.load(f))


def unquote(value: Any) -> Any:
    """hcl2 keeps string literals quoted; strip one level (lists and dicts recursively)."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


def blocks(module: str, kind: str, type_: str) -> dict[str, dict[str, Any]]:
    """{name: body} of every ``<kind> "<type_>" "<name>"`` in modules/<module>/*.tf."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((TERRAFORM / "modules" / module).glob("*.tf")):
        for entry in parse(path).get(kind, []):
            for t, named in unquote(entry).items():
                if t == type_:
                    found.update(named)
    return found


def statements(document: dict[str, Any], dynamic: bool = True) -> list[dict[str, Any]]:
    """The statements of an aws_iam_policy_document, dynamic ones too unless told not to."""
    out = list(document.get("statement", []))
    for dyn in document.get("dynamic", []) if dynamic else []:
        for body in dyn.get("statement", {}).get("content", []) if "statement" in dyn else []:
            out.append(body)
    return out


def variables_and_outputs(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    variables: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        tree = unquote(parse(path))
        for entry in tree.get("variable", []):
            variables.update(entry)
        for entry in tree.get("output", []):
            outputs.update(entry)
    return variables, outputs
