"""Layout of the package (DESIGN: rooms and doors), read from the source with ``ast``.

- no module over :data:`MAX_LINES` lines;
- no import of another subpackage's private (``_name``) names, neither
  ``from X import _name`` nor ``X._name`` on an imported module; a private name
  may be used within its own subpackage (``deepglass.solve.*``), and a
  top-level module (``deepglass.store``) is its own unit;
- no import circle between modules: the graph of module imports (top level and
  inside functions alike; ``if TYPE_CHECKING:`` blocks excluded) has no cycle
  (Tarjan's strongly connected components, O(modules + imports)).

Each check carries an explicit list of what is still allowed
(:data:`ALLOWED_LONG`, :data:`ALLOWED_PRIVATE`, :data:`ALLOWED_CIRCLES`), each
entry in a module being split or rewritten; an entry no longer needed fails
:func:`test_allow_lists_are_current`, so the lists only shrink.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "deepglass"
MAX_LINES = 600

#: modules still over MAX_LINES (remove an entry when its module is split: a
#: stale entry fails :func:`test_allow_lists_are_current`)
ALLOWED_LONG: set[str] = set()

#: (importing module, private name used) pairs still allowed
ALLOWED_PRIVATE: set[tuple[str, str]] = set()

#: import circles still allowed: a circle (the modules of a strongly connected
#: component) passes when it lies inside one of these sets
ALLOWED_CIRCLES: set[frozenset[str]] = set()


# ---------------------------------------------------------------------------------
def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _unit(module: str) -> str:
    """The unit a private name is shared within: its subpackage
    (``deepglass.solve``), or a top-level module itself (``deepglass.store``)."""
    parts = module.split(".")
    if len(parts) == 1:
        return module
    sub = ".".join(parts[:2])
    return sub if sub in MODULES and _is_package(sub) else module


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """Absolute name of the module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    package = module if _is_package(module) else module.rpartition(".")[0]
    base = package.split(".")
    if node.level > 1:
        base = base[:-(node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (never imported at run time)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    return skip


class _Imports:
    """One module's imports: edges to package modules (``(target, line)``) and
    private names used from other modules (``(qualified name, line)``)."""

    def __init__(self, module: str):
        self.module = module
        tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
        skip = _type_checking_nodes(tree)
        self.edges: list[tuple[str, int]] = []
        self.private: list[tuple[str, int]] = []
        aliases: dict[str, str] = {}     # local name -> package module it is bound to
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in MODULES:
                        self.edges.append((a.name, node.lineno))
                        aliases[a.asname or a.name] = a.name if a.asname else ROOT
            elif isinstance(node, ast.ImportFrom):
                self._from(node, aliases)
        for node in ast.walk(tree):
            if (id(node) not in skip and isinstance(node, ast.Attribute)
                    and _private(node.attr)):
                target = self._attribute_module(node.value, aliases)
                if target is not None:
                    self.private.append((f"{target}.{node.attr}", node.lineno))

    def _from(self, node: ast.ImportFrom, aliases: dict[str, str]) -> None:
        source = _resolve(self.module, node)
        if source not in MODULES:
            return                                     # outside the package
        for a in node.names:
            sub = f"{source}.{a.name}"
            if sub in MODULES:                         # a module: `from . import trace`
                self.edges.append((sub, node.lineno))
                aliases[a.asname or a.name] = sub
                continue
            self.edges.append((source, node.lineno))
            if _private(a.name):
                self.private.append((sub, node.lineno))

    @staticmethod
    def _attribute_module(value: ast.AST, aliases: dict[str, str]) -> str | None:
        """The package module an expression names (``tr``, ``deepglass.graph.trace``)."""
        if isinstance(value, ast.Name):
            return aliases.get(value.id)
        if isinstance(value, ast.Attribute):
            base = _Imports._attribute_module(value.value, aliases)
            name = f"{base}.{value.attr}" if base else None
            return name if name in MODULES else None
        return None


IMPORTS = {m: _Imports(m) for m in MODULES}


def _owner(qualified: str) -> str:
    """The module that defines a qualified private name."""
    return qualified.rpartition(".")[0]


def long_modules() -> dict[str, int]:
    """Modules over MAX_LINES lines -> their line count."""
    sizes = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    return {m: n for m, n in sorted(sizes.items()) if n > MAX_LINES}


def private_imports() -> set[tuple[str, str, int]]:
    """(importer, private name, line) across units."""
    return {(m, q, line) for m, imp in IMPORTS.items() for q, line in imp.private
            if _unit(_owner(q)) != _unit(m)}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in it)."""
    graph = {m: set() for m in MODULES}
    for m, imp in IMPORTS.items():
        graph[m].update(target for target, _ in imp.edges)
    return graph


def circles() -> list[list[str]]:
    """The strongly connected components of the import graph with more than one
    module (or a module importing itself), sorted: Tarjan's algorithm."""
    graph = import_graph()
    index, low, stack, on, comps = {}, {}, [], set(), []

    def strong(v):                                     # Tarjan, recursive (depth < modules)
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                comps.append(sorted(comp))

    for v in sorted(MODULES):
        if v not in index:
            strong(v)
    return sorted(comps)


def import_cycles() -> list[list[str]]:
    """One cycle through each import circle (:func:`circles`)."""
    graph = import_graph()
    return [_cycle_in(comp, graph) for comp in circles()]


def _cycle_in(comp: list[str], graph) -> list[str]:
    """One cycle through the first module of a strongly connected component
    (breadth-first back to it inside the component)."""
    start, members = comp[0], set(comp)
    parent, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in a strongly connected component {comp}")


def _cycle_lines(cycle: list[str]) -> str:
    """A cycle with the line of each import along it."""
    steps = []
    for a, b in zip(cycle, cycle[1:]):
        lines = sorted(line for t, line in IMPORTS[a].edges if t == b)
        steps.append(f"{a} (line {lines[0]}) -> {b}")
    return "; ".join(steps)


# ---------------------------------------------------------------------------------
def test_no_module_over_the_line_limit():
    over = {m: n for m, n in long_modules().items() if m not in ALLOWED_LONG}
    assert not over, f"modules over {MAX_LINES} lines: {over}"


def test_no_private_name_imported_across_subpackages():
    found = sorted((m, q, line) for m, q, line in private_imports()
                   if (m, q) not in ALLOWED_PRIVATE)
    assert not found, "private names used across subpackages: " + "; ".join(
        f"{m} line {line}: {q}" for m, q, line in found)


def test_no_import_circle():
    graph = import_graph()
    found = [c for c in circles() if not any(set(c) <= allowed for allowed in ALLOWED_CIRCLES)]
    assert not found, "import circles: " + " | ".join(
        f"{c}: {_cycle_lines(_cycle_in(c, graph))}" for c in found)


def test_allow_lists_are_current():
    """An allowance no longer needed is removed: the lists only shrink."""
    stale_long = ALLOWED_LONG - set(long_modules())
    used = {(m, q) for m, q, _ in private_imports()}
    stale_private = ALLOWED_PRIVATE - used
    stale_circles = {a for a in ALLOWED_CIRCLES if not any(set(c) <= a for c in circles())}
    assert not stale_long and not stale_private and not stale_circles, (
        f"remove from ALLOWED_LONG: {sorted(stale_long)}; "
        f"from ALLOWED_PRIVATE: {sorted(stale_private)}; "
        f"from ALLOWED_CIRCLES: {[sorted(c) for c in stale_circles]}")


# --- the checker itself, on made-up modules ---------------------------------------
def test_checker_resolves_relative_imports_and_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / ROOT
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from .x import f\n")
    (pkg / "a" / "x.py").write_text("from ..b import _g\n\ndef f():\n    from . import y\n")
    (pkg / "a" / "y.py").write_text("import deepglass.a.x as xx\nv = xx._h\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from .a import x\n_g = 1\n")
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "SRC", tmp_path)
    monkeypatch.setattr(this, "MODULES", _modules())
    monkeypatch.setattr(this, "IMPORTS", {m: _Imports(m) for m in this.MODULES})
    assert set(this.MODULES) == {"deepglass", "deepglass.a", "deepglass.a.x", "deepglass.a.y",
                                 "deepglass.b"}
    # b._g from subpackage a is flagged; x._h used within a is not
    assert private_imports() == {("deepglass.a.x", "deepglass.b._g", 1)}
    # the function-level import closes x -> y -> x; b's TYPE_CHECKING import is no edge
    assert circles() == [["deepglass.a.x", "deepglass.a.y"]]
    assert import_cycles() == [["deepglass.a.x", "deepglass.a.y", "deepglass.a.x"]]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_public_name_resolves(module):
    """Each name a module lists in ``__all__`` is importable from it: a split
    module keeps its public import paths (tests and README use them)."""
    import importlib

    mod = importlib.import_module(module)
    missing = [name for name in getattr(mod, "__all__", ()) if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ names {missing} it does not define"
