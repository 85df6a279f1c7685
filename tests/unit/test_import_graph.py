"""No module of ``engine`` or ``gateway`` imports a module that imports it back.

The graph is read from the source with ``ast``, so nothing is imported to build it. Every
import statement counts, wherever it stands: at the top, inside a function (a lazy import
still makes the two modules depend on each other, it only hides it from Python at start),
and under ``if TYPE_CHECKING:`` (a type-only import is still a dependency of the code's
design: the cycle ``_binding -> _sweep -> edge -> _binding`` was one, visible only there).
An ``import a.b.c`` or ``from a.b import c`` points at the module ``a.b.c`` when there is
one, else at the package ``a.b`` (its ``__init__``); the implicit import of a module's parent
packages is not counted (every package's ``__init__`` would otherwise be in a cycle with the
modules it re-exports).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "gateway")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _targets(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module`` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                     for alias in node.names]  # fmt: skip
        else:
            continue
        for name in names:
            target = resolve(name)
            if target is not None and target != module:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _targets(name, path, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_is_read_from_every_module() -> None:
    """The walk sees the packages' modules and their imports (an empty graph proves nothing)."""
    graph = _graph()
    assert len(graph) > 80
    assert "engine.store._port" in graph["engine.store"]
    assert "gateway.realtime.edge" in graph["gateway.realtime"]
    assert "engine.config" in graph["gateway.app"]  # under TYPE_CHECKING there


def test_a_cycle_is_found() -> None:
    """The cycle finder reports a loop of three, and not a module importing itself."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_module_imports_one_that_imports_it_back() -> None:
    """The import graph of engine and gateway has no cycle, type-only and lazy imports too."""
    assert _cycles(_graph()) == []
