"""The contract the code cites is in the repository: ``docs/API.md`` and its sections."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_CITE = re.compile(r'docs/API\.md(?:``)?,? "([^"]+)"')


def _headings() -> list[str]:
    text = (ROOT / "docs" / "API.md").read_text()
    return [line.lstrip("#").strip().lower() for line in text.splitlines() if line.startswith("#")]


def test_every_cited_section_of_the_contract_exists() -> None:
    """Each citation of a section of docs/API.md in engine, gateway and tests (the file's path,
    then the section's name in double quotes) names a heading there."""
    headings = _headings()
    cited: list[tuple[str, str]] = []
    for path in sorted([*ROOT.glob("engine/**/*.py"), *ROOT.glob("gateway/**/*.py"),
                        *ROOT.glob("tests/**/*.py")]):  # fmt: skip
        text = " ".join(path.read_text().split())
        cited += [(str(path.relative_to(ROOT)), name) for name in _CITE.findall(text)]
    assert len(cited) >= 8
    missing = [
        (where, name)
        for where, name in cited
        if not any(h.startswith(name.lower()) or name.lower() in h for h in headings)
    ]
    assert missing == []


def test_no_docstring_cites_a_contract_file_the_repository_lacks() -> None:
    """``API.md`` is cited by its path in the repository, ``docs/API.md``."""
    bare = [
        str(path.relative_to(ROOT))
        for path in sorted([*ROOT.glob("engine/**/*.py"), *ROOT.glob("gateway/**/*.py")])
        if re.search(r"(?<![/\w])API\.md", path.read_text())
    ]
    assert (ROOT / "docs" / "API.md").is_file()
    assert bare == []
