"""The Dockerfile's instructions, parsed just enough for the tests to run what the image runs."""

from __future__ import annotations

import json
import re

from tests.support import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stage(name: str) -> list[tuple[str, str]]:
    """The instructions of the stage ``FROM ... AS name``."""
    found: list[tuple[str, str]] | None = None
    for word, rest in instructions():
        if word == "FROM":
            if found is not None:
                return found
            if rest.split()[-1] == name:
                found = []
        elif found is not None:
            found.append((word, rest))
    assert found is not None, f"no stage {name}"
    return found


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), rest
    assert all(isinstance(v, str) for v in value), rest
    return value


def env(stage_name: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for word, rest in stage(stage_name):
        if word == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", rest):
                values[key] = value
    return values
