"""The package's import graph has no cycles and respects the layer boundaries.

The graph is built from the source with :mod:`ast` (no module is imported): one node per module of
``nngraph/`` (installed as ``nngraph``) and ``compilers/`` (installed as ``nngraph.compilers``), an
edge A -> B for every ``import``/``from ... import`` in A that names module B -- function-level
(lazy) imports included, since a lazy import is still a dependency that only hides a cycle from
the interpreter; imports under ``if TYPE_CHECKING:`` excluded (never run). ``from pkg import name``
is an edge to ``pkg.name`` when that is a module, else to ``pkg``. Cycles are the strongly
connected components of more than one module (networkx).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"nngraph": "nngraph", "compilers": "nngraph.compilers"}

#: (importer area, imported area) pairs that must not occur: the planner (passes) needs no torch back end,
#: the torch back end no planner, the ONNX exporter no trainer.
FORBIDDEN = {
    ("nngraph.compilers.passes", "nngraph.compilers.torch"),
    ("nngraph.compilers.torch", "nngraph.compilers.passes"),
    ("nngraph.compilers.onnx", "nngraph.compilers.train"),
}


def module_files() -> dict[str, Path]:
    """Module name -> source file, for every module of the package."""
    out = {}
    for folder, name in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([name, *parts])] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never executed)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _imported(node: ast.AST, package: str, modules: dict[str, Path]) -> list[str]:
    """The modules one import statement names (the innermost existing module of each dotted name)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    else:
        return []
    found = []
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            found.append(name)
    return found


def import_graph() -> nx.DiGraph:
    """Module -> the modules it imports (see the module doc)."""
    modules = module_files()
    graph = nx.DiGraph()
    for mod, path in modules.items():
        graph.add_node(mod)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) not in skip:
                graph.add_edges_from((mod, t) for t in _imported(node, package, modules) if t != mod)
    return graph


def area(module: str) -> str:
    """The layer of a module: ``nngraph.compilers.<back end>``, or ``nngraph`` for the front end."""
    parts = module.split(".")
    return ".".join(parts[:3]) if parts[:2] == ["nngraph", "compilers"] else "nngraph"


def cycles(graph: nx.DiGraph) -> set[tuple[str, ...]]:
    return {tuple(sorted(c)) for c in nx.strongly_connected_components(graph) if len(c) > 1}


def crossings(graph: nx.DiGraph) -> set[tuple[str, str]]:
    return {(a, b) for a, b in graph.edges if (area(a), area(b)) in FORBIDDEN}


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert graph.has_edge("nngraph.compilers.onnx.pipeline.plan", "nngraph.compilers.onnx.kernels")  # `from ..x`
    assert graph.has_edge("nngraph.compilers.onnx.seq2seq", "nngraph.compilers.torch")  # inside a function
    assert not graph.has_edge("nngraph.compilers.onnx.export", "nngraph.compilers.onnx")  # `from . import x`: x


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in sorted(found))


def test_no_forbidden_boundary_crossings():
    found = crossings(import_graph())
    assert not found, "forbidden imports (passes -> torch, torch -> passes, onnx -> train): " + ", ".join(
        f"{a} -> {b}" for a, b in sorted(found))
