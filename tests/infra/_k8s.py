"""Renders the kustomize overlays with ``kubectl kustomize`` (offline) and indexes the objects."""

from __future__ import annotations

import functools
import shutil
import subprocess
from typing import Any

import yaml

from tests.support import ROOT

K8S = ROOT / "k8s"
OVERLAYS = ("dev", "production")


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed (.ci/system-deps installs it)"
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def one(overlay: str, kind: str, name: str = "healthmed") -> dict[str, Any]:
    found = [o for o in render(overlay) if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: {len(found)} {kind}/{name}"
    return found[0]


def kinds(overlay: str) -> set[str]:
    return {o["kind"] for o in render(overlay)}


def container(overlay: str) -> dict[str, Any]:
    (main,) = one(overlay, "Deployment")["spec"]["template"]["spec"]["containers"]
    return main


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics for matchLabels and matchExpressions."""
    if not selector:
        return False
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if (
            (op == "In" and value not in expr["values"])
            or (op == "NotIn" and value in expr["values"])
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True
