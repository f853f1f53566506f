"""How the project's modules import each other, read with the standard library's ast (nothing is imported).

Layers, lowest first; a module imports from its own layer and those below, never above:

1. base utilities: ``genlib.errors``, ``genlib.tables``, ``genlib.images``, ``genlib.user_cache``;
2. the core: ``genlib.data``, ``genlib.models``, ``genlib.training``, ``genlib.evaluation`` (the evaluation
   profiles included: their overrides are applied one layer up, ``genlib.spec.get_eval_profile``);
3. the run spec and the execution plan: ``genlib.presets``, ``genlib.spec``, ``genlib.plan``;
4. services: ``genlib.tracking`` (genlib's only mlflow importer), ``genlib.ops`` (processes, servers, the
   stack; no prefect or mlflow import: they run as separate processes);
5. the command line ``genlib.cli``; the recipes ``flows`` (prefect); the benchmarks ``bench``.

Checked: no import cycle among genlib, flows and bench; the core imports only itself and layer 1 (so
neither prefect nor mlflow nor anything above it); no private name of Prefect is imported and no private
attribute of a Prefect object is used. Every import counts, at module level or inside a function; those
under ``if TYPE_CHECKING:`` do not (they never run). Importing ``a.b.c`` runs the packages ``a`` and
``a.b`` too, so a module depends on those ``__init__`` modules as well (unless it lives in them).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOPS = ("genlib", "flows", "bench")
CORE = ("genlib.data", "genlib.models", "genlib.training", "genlib.evaluation")
BASE = ("genlib.errors", "genlib.tables", "genlib.images", "genlib.user_cache")
PREFECT_PRIVATE_ALLOWED: tuple[str, ...] = ()  # files allowed Prefect's private names: none


def modules(root: Path, tops: tuple[str, ...] = TOPS) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root``'s ``tops`` (a package by its ``__init__``)."""
    found = {}
    for top in tops:
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@functools.lru_cache(maxsize=None)
def parsed(path: Path) -> ast.Module:
    """The syntax tree of ``path``, parsed once per session."""
    return ast.parse(path.read_text(), str(path))


def _type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that may run: all but the bodies of ``if TYPE_CHECKING:`` blocks (their ``else`` runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _type_checking(node.test):
            stack.extend([node.test, *node.orelse])
        else:
            stack.extend(ast.iter_child_nodes(node))


def imported_names(node: ast.AST, package: str) -> list[str]:
    """Absolute dotted names an import statement may load (``from a import b``: ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    return []


def import_graph(root: Path, tops: tuple[str, ...] = TOPS) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> project modules it imports, module -> every absolute name it imports)."""
    mods = modules(root, tops)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    names: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in runtime_nodes(parsed(path)):
            for name in imported_names(node, package):
                names[module].add(name)
                target = resolve(name)
                while target:  # the module, then the packages whose __init__ importing it runs
                    if module != target and not module.startswith(target + "."):
                        edges[module].add(target)
                    target = target.rpartition(".")[0]
                    target = target if target in mods else ""
    return edges, names


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(edges) + 100))
    try:
        for v in sorted(edges):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def _in(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def one_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest import path from the component's first module back to itself."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges[v] & members):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return component


# --- the project --------------------------------------------------------------------------------------------


def test_no_import_cycles():
    edges, _ = import_graph(ROOT)
    found = cycles(edges)
    assert not found, "import cycles: " + "; ".join(" -> ".join(one_cycle(c, edges)) for c in found)


def test_the_core_imports_nothing_above_it():
    _, names = import_graph(ROOT)
    wrong = [f"{module} imports {name}" for module in sorted(m for m in names if _in(m, CORE))
             for name in sorted(names[module])
             if name.split(".")[0] in ("prefect", "mlflow")
             or (name.split(".")[0] in TOPS and name != "genlib" and not _in(name, CORE + BASE))]
    assert not wrong, "the core (" + ", ".join(CORE) + ") reaches above itself: " + "; ".join(wrong)


def _prefect_private_names() -> set[str]:
    """Private attribute and method names Prefect's own classes use (``self._executor``, ``def _start(self``)."""
    spec = importlib.util.find_spec("prefect")  # its files, without the seconds an import takes
    assert spec is not None and spec.submodule_search_locations
    pattern = re.compile(r"\bself\.(_[A-Za-z]\w*)|^\s*(?:async\s+)?def (_[A-Za-z]\w*)\(self", re.M)
    found: set[str] = set()
    for path in Path(spec.submodule_search_locations[0]).rglob("*.py"):
        for attribute, method in pattern.findall(path.read_text(errors="replace")):
            found.add(attribute or method)
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _prefect_bound(tree: ast.AST) -> set[str]:
    """Local names bound to prefect modules or to names imported from them."""
    bound = set()
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            bound |= {(a.asname or a.name.split(".")[0]) for a in node.names if a.name.split(".")[0] == "prefect"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "prefect" and not node.level:
            bound |= {a.asname or a.name for a in node.names}
    return bound


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _defined_privately(tree: ast.AST, prefect_bound: set[str]) -> set[str]:
    """Private names the project itself defines (functions, classes, globals, attributes it assigns),
    leaving out classes that subclass a Prefect class."""
    skip = {id(n) for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
            and any(_root_name(b) in prefect_bound for b in c.bases) for n in ast.walk(c)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            found.add(node.attr)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
    return {name for name in found if _private(name)}


def test_no_private_prefect_names_or_attributes():
    """Heuristic for attributes (types are not known without running): in a module that imports prefect,
    ``x._name`` counts when ``x`` is a prefect name, or when Prefect's classes use ``_name`` and the project
    defines no ``_name`` of its own."""
    files = [p for top in (*TOPS, "tests") for p in sorted((ROOT / top).rglob("*.py"))]
    trees = {p: parsed(p) for p in files}
    ours = set().union(*(_defined_privately(t, _prefect_bound(t)) for p, t in trees.items()
                         if str(p.relative_to(ROOT)) not in PREFECT_PRIVATE_ALLOWED))
    theirs = _prefect_private_names() - ours
    wrong = []
    for path, tree in trees.items():
        where = str(path.relative_to(ROOT))
        bound = _prefect_bound(tree)
        if where in PREFECT_PRIVATE_ALLOWED or not bound:
            continue
        for node in runtime_nodes(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "prefect":
                private = [p for p in node.module.split(".") if _private(p)] + [a.name for a in node.names if _private(a.name)]
                wrong += [f"{where}:{node.lineno} imports {node.module}.{p}" for p in private]
            elif isinstance(node, ast.Import):
                wrong += [f"{where}:{node.lineno} imports {a.name}" for a in node.names
                          if a.name.split(".")[0] == "prefect" and any(_private(p) for p in a.name.split("."))]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if _root_name(node.value) in bound or node.attr in theirs:
                    wrong.append(f"{where}:{node.lineno} uses {ast.unparse(node)}")
    assert not wrong, "Prefect's private API: " + "; ".join(wrong)


# --- the checks themselves ----------------------------------------------------------------------------------


def test_the_graph_sees_function_level_and_package_imports_but_not_type_checking(tmp_path):
    files = {
        "genlib/__init__.py": "",
        "genlib/a.py": "def f():\n    from genlib import b\n",
        "genlib/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import genlib.a\nelse:\n    import os\n",
        "genlib/pkg/__init__.py": "from genlib.pkg.inner import X\n",
        "genlib/pkg/inner.py": "from ..c import Y\nX = 1\n",
        "genlib/c.py": "def g():\n    import genlib.pkg.other\n",
        "genlib/pkg/other.py": "",
        "flows/__init__.py": "",
        "bench/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    edges, names = import_graph(tmp_path)
    assert "genlib.b" in edges["genlib.a"] and "genlib.a" not in edges["genlib.b"] and "os" in names["genlib.b"]
    assert edges["genlib.c"] >= {"genlib.pkg", "genlib.pkg.other"}  # the package's __init__ runs too
    assert "genlib.pkg" not in edges["genlib.pkg.inner"]  # its own package is not a dependency
    assert cycles(edges) == [["genlib.c", "genlib.pkg", "genlib.pkg.inner"]]
    assert one_cycle(cycles(edges)[0], edges) == ["genlib.c", "genlib.pkg", "genlib.pkg.inner", "genlib.c"]
    assert cycles({"a": {"b"}, "b": set()}) == []
