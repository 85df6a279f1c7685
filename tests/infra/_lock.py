"""Reads ``requirements.lock`` (uv's annotated output) and ``pyproject.toml`` without a network."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import ROOT

LOCK = ROOT / "requirements.lock"
ROOT_MARK = "healthmed (pyproject.toml)"


@dataclass
class Pin:
    name: str
    version: str
    marker: str | None
    hashes: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def read_lock() -> dict[str, Pin]:
    """Every pin of the lock by canonical name, with its hashes and the packages it is there for."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via = False
    for raw in LOCK.read_text().splitlines():
        line = raw.strip()
        head = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", raw)
        if head:
            name = canonicalize_name(head.group(1).split("[")[0])
            current = pins[name] = Pin(name, head.group(2), head.group(3))
            in_via = False
        elif current is not None and line.startswith("--hash="):
            current.hashes.append(line.removeprefix("--hash=").rstrip(" \\"))
        elif current is not None and line.startswith("# via"):
            rest = line.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current.via.add(rest)
        elif current is not None and in_via and line.startswith("#   "):
            current.via.add(line.removeprefix("#").strip())
    return pins
