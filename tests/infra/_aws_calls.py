"""The AWS API calls engine/ makes, found in its source, and the IAM actions they need.

A module that opens a client (``session.client("<service>", ...)``) is scanned for awaited
method calls (aioboto3's client methods are coroutines) whose name is an operation of that
service in botocore's own model (``xform_name``), plus the operations behind
``get_waiter(...)``. Most operations need the IAM action of the same name; the exceptions are
in ``_AUTHORIZED_BY`` and ``_TRANSACT_ITEM_ACTIONS``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import botocore.session
from botocore import xform_name

from tests.support import ROOT

ENGINE = ROOT / "engine"

_TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
"""TransactWriteItems is authorized per item: each action kind needs its item action."""

_AUTHORIZED_BY = {
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3", "HeadObject"): "s3:GetObject",
}
"""Operations S3 authorizes with another action (S3 API permissions reference)."""


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def service_calls() -> dict[str, dict[str, set[Path]]]:
    """{service: {OperationName: files}} for every client engine/ opens."""
    session = botocore.session.get_session()
    found: dict[str, dict[str, set[Path]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(ENGINE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        awaited = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Await)}
        services = {
            name
            for c in calls
            if isinstance(c.func, ast.Attribute) and c.func.attr == "client" and c.args
            for name in [_string(c.args[0])]
            if name
        }
        for service in services:
            model = session.get_service_model(service)
            by_method = {xform_name(op): op for op in model.operation_names}
            waiters = session.get_waiter_model(service) if service == "dynamodb" else None
            for call in calls:
                if not isinstance(call.func, ast.Attribute):
                    continue
                method = call.func.attr
                if method in by_method and id(call) in awaited:
                    found[service][by_method[method]].add(path)
                elif method == "get_waiter" and call.args and waiters is not None:
                    waiter = waiters.get_waiter(
                        "".join(p.title() for p in (_string(call.args[0]) or "").split("_"))
                    )
                    found[service][waiter.operation].add(path)
            if "TransactWriteItems" in found[service]:
                keys = {
                    _string(k)
                    for n in ast.walk(tree)
                    if isinstance(n, ast.Dict)
                    for k in n.keys
                    if k is not None
                }
                for kind, action in _TRANSACT_ITEM_ACTIONS.items():
                    if kind in keys:
                        found[service][f"TransactWriteItems/{action}"].add(path)
    return {s: dict(ops) for s, ops in found.items()}


def required_actions(calls: dict[str, dict[str, set[Path]]]) -> dict[str, set[str]]:
    """{IAM action: operations that need it}."""
    session = botocore.session.get_session()
    needed: dict[str, set[str]] = defaultdict(set)
    for service, operations in calls.items():
        prefix = session.get_service_model(service).signing_name  # sesv2 signs as "ses"
        for op in operations:
            if op == "TransactWriteItems":
                continue  # authorized by its items' actions, added below
            if op.startswith("TransactWriteItems/"):
                action = f"{prefix}:{op.split('/')[1]}"
            else:
                action = _AUTHORIZED_BY.get((service, op), f"{prefix}:{op}")
            needed[action].add(f"{service}.{op}")
    return dict(needed)
