"""``nngraph view``: one self-contained HTML file showing the graph, blocks as collapsible compound nodes.

The page inlines the vendored cytoscape.js (``view_assets/``, MIT, from the npm registry: see its LICENSE)
and the graph as JSON, so it opens offline. Every block scope is a compound node; a repeated use's container
starts expanded and everything else collapsed, so GPT-2 small opens as its 12 decoder layers, each one node.
Per node it shows what ``nngraph cost`` computes (:func:`nngraph.cost.report.cost_report`: params, shape,
FLOPs, output bytes, kernel and why when a target is given) and the validate diagnostics located on it
(a diagnostic belongs to the node whose spec position is the last one at or before its line). No torch.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from .draw import _block_labels, _edges, _scope_tree
from .errors import Diagnostic
from .ir import Graph

SCOPE = "scope:"  # id prefix of a block's compound node (node names never contain ':')


def _scope_elements(graph: Graph) -> list[dict[str, Any]]:
    """One compound node per block scope; a repeated use's container opens expanded (its copies collapsed)."""
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
        out.append({"id": SCOPE + name, "parent": parent, "label": label, "kind": "block",
                    "expanded": name in containers})
    return out


def _owner(graph: Graph, diag: Diagnostic) -> str | None:
    """The node a diagnostic locates: the last node (in spec order) whose position is at or before its line."""
    best, best_line = None, -1
    for node in graph.nodes.values():
        p = node.pos
        if p.file == diag.pos.file and best_line < p.line <= diag.pos.line:
            best, best_line = node.name, p.line
    return best


def view_data(graph: Graph, report: Mapping[str, Any], diagnostics: Iterable[Diagnostic] = ()) -> dict[str, Any]:
    """The page's JSON: block scopes, nodes (with their cost row and diagnostics), edges, unplaced diagnostics."""
    rows = {r["name"]: r for r in report["nodes"]}
    located: dict[str | None, list[dict[str, Any]]] = {}
    for d in diagnostics:
        located.setdefault(_owner(graph, d), []).append({"severity": d.severity, "message": d.message,
                                                          "where": str(d.pos)})
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
    return {"name": graph.name, "file": graph.file, "sizes": report.get("sizes", {}), "target": report.get("target"),
            "totals": report.get("totals", {}), "scopes": _scope_elements(graph), "nodes": nodes, "edges": edges,
            "unplaced": located.get(None, [])}


def _asset(name: str) -> str:
    return resources.files("nngraph").joinpath("view_assets", name).read_text(encoding="utf-8")


def to_html(data: Mapping[str, Any]) -> str:
    """The self-contained page: the template with the library and the graph JSON inlined (``</`` escaped)."""
    payload = json.dumps(data, default=str).replace("</", "<\\/")
    lib = _asset("cytoscape.min.js").replace("</script", "<\\/script")
    return (_asset("view.html").replace("/*LIBRARY*/", lib).replace("/*GRAPH*/null", payload)
            .replace("/*TITLE*/", str(data.get("name", "graph"))))


def write_view(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write the page to ``path``."""
    from .io import write_text_atomic

    out = Path(path)
    write_text_atomic(out, to_html(data))
    return out
