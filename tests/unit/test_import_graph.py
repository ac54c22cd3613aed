"""teamhub's own modules import each other one way only (house style).

Every module under src/teamhub is read with `ast` (nothing is imported), and
every import of a teamhub module is an edge, also one inside a function: an
import hidden in a function still makes a cycle, it only moves the failure to
run time. Imports under `if TYPE_CHECKING:` count too: a cycle the type
checker needs is still a cycle for the reader. A function-level import of
teamhub's own code is allowed only to defer a heavy import, and a comment
saying so stands right above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "teamhub"


def _modules() -> dict[str, Path]:
    """Dotted name → file, for every module of the package (a package is its __init__)."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


class _Imports(ast.NodeVisitor):
    """Collects (line, target module, inside a function?) for one module."""

    def __init__(self, name: str, is_package: bool) -> None:
        self.package = name.split(".") if is_package else name.split(".")[:-1]
        self.depth = 0
        self.found: list[tuple[int, str, bool]] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def _add(self, line: int, target: str) -> None:
        if target in MODULES:
            self.found.append((line, target, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package[: len(self.package) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        # `from pkg import sub` imports the module pkg.sub; `from pkg import name` uses pkg.
        whole = False
        for alias in node.names:
            if f"{module}.{alias.name}" in MODULES:
                self._add(node.lineno, f"{module}.{alias.name}")
            else:
                whole = True
        if whole:
            self._add(node.lineno, module)


def _imports() -> dict[str, list[tuple[int, str, bool]]]:
    out = {}
    for name, path in MODULES.items():
        visitor = _Imports(name, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(), str(path)))
        out[name] = [(line, target, inner) for line, target, inner in visitor.found
                     if target != name]
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path back to its start) per strongly connected group (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    cycles = []
    for group in groups:
        members = set(group)
        # A shortest way from the group's first module back to itself, inside the group.
        start = group[0]
        paths = {start: [start]}
        frontier = [start]
        found = None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(edges[v] & members):
                    if w == start:
                        found = paths[v] + [start]
                        break
                    if w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
                if found:
                    break
            frontier = nxt
        cycles.append(found or group)
    return cycles


def test_walker_sees_the_package() -> None:
    imports = _imports()
    assert len(MODULES) > 50
    # Top-level, relative, `from pkg import module` and function-level imports are all seen.
    assert (any(t == "teamhub.errors" for _, t, _ in imports["teamhub.settings"]))
    assert any(t == "teamhub.system.docker" for _, t, _ in imports["teamhub.limits"])


def test_cycles_are_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    imports = _imports()
    edges = {name: {t for _, t, _ in found} for name, found in imports.items()}
    cycles = _cycles(edges)
    assert not cycles, "import cycles in src/teamhub: " + "; ".join(
        " -> ".join(c) for c in cycles)


def test_function_level_imports_only_defer_heavy_ones() -> None:
    bad = []
    for name, found in _imports().items():
        bad += _undeferred(name, found)
    assert not bad, ("function-level imports of teamhub's own modules (move them to the top, "
                     "or say above them which heavy import they defer): " + ", ".join(bad))


def _undeferred(name: str, found: list[tuple[int, str, bool]]) -> list[str]:
    lines = MODULES[name].read_text().splitlines()
    bad = []
    for line, target, inner in found:
        if not inner:
            continue
        above = []
        i = line - 2
        while i >= 0 and lines[i].strip().startswith("#"):
            above.append(lines[i].lower())
            i -= 1
        if not any("defer" in text for text in above):
            bad.append(f"{MODULES[name].relative_to(SRC)}:{line} imports {target}")
    return bad


def test_the_cli_does_not_load_jupyterhubs_web_parts() -> None:
    """Every `teamhub` command imports teamhub.cli; JupyterHub's handlers, authenticators and
    ORM cost over half a second to import and only the hub process needs them (an import of
    accounts.pam from the root helper's door once tripled the CLI's start)."""
    import subprocess
    import sys

    heavy = ("jupyterhub.auth", "jupyterhub.orm", "jupyterhub.handlers", "jupyterhub.app")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, teamhub.cli; "
         f"print([m for m in {heavy!r} if m in sys.modules])"],
        capture_output=True, text=True, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
