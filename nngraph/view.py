"""``nngraph view``: one self-contained HTML file showing the graph, blocks as collapsible compound nodes.

The page inlines the vendored cytoscape.js and its dagre layered layout (``view_assets/``, MIT, from the npm
registry: see its LICENSE) and the graph as JSON, so it opens offline. Every block scope is a compound node; a
repeated use's container starts expanded and everything else collapsed, so GPT-2 small opens as its 12 decoder
layers, each one node, drawn top to bottom in dataflow order. Per node it shows what ``nngraph cost`` computes
(:func:`nngraph.cost.report.cost_report`: params, shape, FLOPs, output bytes, kernel and why when a target is
given); per block the sums of those rows (:func:`nngraph.cost.report.scope_sums`, what cost's block rows are);
and validate's diagnostics on the node they locate (:func:`owners`), the rest in a banner. No torch.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from .cost.report import scope_sums
from .draw import _block_labels, _edges, _scope_tree
from .errors import Diagnostic
from .ir import Graph

SCOPE = "scope:"  # id prefix of a block's compound node (node names never contain ':')
LIBRARIES = ("cytoscape.min.js", "cytoscape-dagre.min.js")  # inlined in this order (the layout registers itself)
_USED_AS = re.compile(r"used as '([^']+)'(?: \(copy (\d+)\))?")


def _scope_elements(graph: Graph, rows: list[dict[str, Any]], located: Mapping[str | None, list[dict[str, Any]]]
                    ) -> list[dict[str, Any]]:
    """One compound node per block scope, with the sums of its cost rows and the diagnostics of its nodes;
    a repeated use's container opens expanded (its copies collapsed)."""
    children, _ = _scope_tree(graph)
    labels = _block_labels(graph)
    containers = {u.name: u.block for u in graph.block_uses if u.repeat > 1}
    out = []
    for scope in children:
        if not scope:
            continue
        name = ".".join(scope)
        parent = SCOPE + ".".join(scope[:-1]) if len(scope) > 1 else None
        copy_of = containers.get(".".join(scope[:-1]))  # a copy of a repeated use: h.3 is a decoder_layer
        label = labels.get(scope) or (f"{name}: {copy_of}" if copy_of else name)
        inside = [d for node, ds in located.items() if node and node.startswith(name + ".") for d in ds]
        out.append({"id": SCOPE + name, "parent": parent, "label": label, "kind": "block",
                    "expanded": name in containers, "totals": scope_sums(rows, name) if rows else None,
                    "diagnostics": inside})
    return out


def _use_path(diag: Diagnostic) -> str:
    """The copy a diagnostic inside blocks was found in, from its use chain: ``h.0.mlp`` for a note chain
    ``used as 'mlp'`` < ``used as 'h' (copy 0)`` (innermost first); '' outside blocks."""
    parts = []
    for note in reversed(diag.notes):
        m = _USED_AS.search(note)
        if m:
            parts.append(m.group(1) + (f".{m.group(2)}" if m.group(2) is not None else ""))
    return ".".join(parts)


def owners(graph: Graph, diagnostics: Iterable[Diagnostic]) -> dict[str | None, list[Diagnostic]]:
    """Each diagnostic under the node it locates, None when it locates none (a banner's).

    A diagnostic locates a node when it is on a line where that node, one of its parameters or one of its
    inputs is written; a line inside a block is every copy's, so the copy is the one its use chain names."""
    at: dict[tuple[str, int], list[str]] = {}
    for node in graph.nodes.values():
        for p in {node.pos, *node.param_pos.values(), *node.input_pos.values()}:
            names = at.setdefault((p.file, p.line), [])
            if node.name not in names:
                names.append(node.name)
    out: dict[str | None, list[Diagnostic]] = {}
    for d in diagnostics:
        names = at.get((d.pos.file, d.pos.line), [])
        path = _use_path(d)
        names = [n for n in names if n.startswith(path + ".")] if path else names
        out.setdefault(names[0] if names else None, []).append(d)
    return out


def _diag_data(d: Diagnostic, node: str | None) -> dict[str, Any]:
    return {"severity": d.severity, "message": d.message, "where": str(d.pos), "node": node,
            **({"hint": d.hint} if d.hint else {}), **({"notes": list(d.notes)} if d.notes else {})}


def view_data(graph: Graph, report: Mapping[str, Any] | None, diagnostics: Iterable[Diagnostic] = ()) -> dict[str, Any]:
    """The page's JSON: block scopes (with their sums), nodes (with their cost row and diagnostics), edges, and
    the diagnostics no node carries. ``report`` is None when the spec has errors (no cost for a broken graph)."""
    rows_list = list(report["nodes"]) if report else []
    rows = {r["name"]: r for r in rows_list}
    located = {k: [_diag_data(d, k) for d in ds] for k, ds in owners(graph, diagnostics).items()}
    nodes = []
    for name, node in graph.nodes.items():
        parent = SCOPE + ".".join(node.scope) if node.scope else None
        nodes.append({"id": name, "parent": parent, "label": f"{name.rsplit('.', 1)[-1]}\n{node.op}", "kind": "op",
                      "info": {**rows.get(name, {"op": node.op}), "where": str(node.pos)},
                      "diagnostics": located.get(name, [])})
    known = {n["id"] for n in nodes}
    for gi in graph.inputs:
        nodes.append({"id": gi, "parent": None, "label": f"input {gi}", "kind": "io", "info": {"input": gi},
                      "diagnostics": []})
        known.add(gi)
    edges = [{"source": s, "target": t, "label": lab} for s, t, lab in _edges(graph)]
    for e in edges:
        if e["target"] not in known:
            nodes.append({"id": e["target"], "parent": None, "label": e["target"], "kind": "io",
                          "info": {"output": e["target"]}, "diagnostics": []})
            known.add(e["target"])
    edges = [e for e in edges if e["source"] in known]
    report = report or {}
    return {"name": graph.name, "file": graph.file, "sizes": report.get("sizes", {}), "target": report.get("target"),
            "totals": report.get("totals", {}), "scopes": _scope_elements(graph, rows_list, located),
            "nodes": nodes, "edges": edges, "unplaced": located.get(None, [])}


def _asset(name: str) -> str:
    """A file of the installed package's ``view_assets`` (package data, not the repository's folder)."""
    return resources.files("nngraph").joinpath("view_assets", name).read_text(encoding="utf-8")


def to_html(data: Mapping[str, Any]) -> str:
    """The self-contained page: the template with the libraries, the graph JSON and the title filled in, in one
    pass over the template (nothing inlined is searched again); ``</`` and ``<!--`` escaped inside scripts."""
    fills = {
        "/*LIBRARY*/": "\n;\n".join(_asset(name) for name in LIBRARIES).replace("</script", "<\\/script"),
        "/*GRAPH*/null": json.dumps(data, default=str).replace("</", "<\\/").replace("<!--", "<\\!--"),
        "/*TITLE*/": str(data.get("name", "graph")).replace("&", "&amp;").replace("<", "&lt;"),
    }
    return re.sub("|".join(re.escape(k) for k in fills), lambda m: fills[m.group(0)], _asset("view.html"))


def write_view(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write the page to ``path``."""
    from .io import write_text_atomic

    out = Path(path)
    write_text_atomic(out, to_html(data))
    return out
