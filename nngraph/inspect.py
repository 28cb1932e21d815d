"""A summary of a validated graph: every node's op, output shapes and parameter count.

:func:`summarize` turns a :class:`~nngraph.ir.Graph` into plain, JSON-ready data
(the same data ``nngraph inspect --format json`` prints); :func:`format_table`
renders it as a fixed-width text table without any third-party package (the CLI
uses rich for the same rows when it is installed).

Parameter subtotals are given per block use (``body`` = all copies of a repeated
block) and per copy (``body.0``, ``body.1``); copies that share weights with the
first copy (``share: true``) count zero, exactly as :attr:`Graph.total_params`.
"""

from __future__ import annotations

from typing import Any

from .infer import ref_params
from .ir import Graph
from .types import TensorType


def type_dict(t: TensorType | None) -> dict | None:
    """A tensor type as ``{"shape": [...], "dtype": ...}`` (None when unknown)."""
    if t is None:
        return None
    return {"shape": list(t.shape), "dtype": t.dtype}


def type_text(t: TensorType | dict | None) -> str:
    """``float32[batch, 256]``; ``?`` when unknown."""
    if t is None:
        return "?"
    if isinstance(t, dict):
        return f"{t['dtype']}[{', '.join(str(d) for d in t['shape'])}]"
    return str(t)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def summarize(graph: Graph) -> dict[str, Any]:
    """The graph as JSON-ready data: inputs, nodes (op, outputs, params), outputs, block subtotals, total."""
    nodes = []
    for node in graph.nodes.values():
        nodes.append({
            "name": node.name,
            "op": node.op,
            "block": node.block,
            "scope": ".".join(node.scope),
            "inputs": [str(r) for r in node.all_refs()],
            "outputs": {k: type_dict(t) for k, t in node.outputs.items()},
            "params": node.n_params or 0,
            "shares_params_with": node.shares_params_with,
            "refs": ref_params(graph, node),
        })
    blocks = []
    for use in graph.block_uses:
        members = [n for n in nodes if _under(n["name"], use.name)]
        entry: dict[str, Any] = {"name": use.name, "block": use.block, "repeat": use.repeat, "shared": use.shared,
                                 "nodes": len(members), "params": sum(n["params"] for n in members)}
        if use.repeat > 1:
            entry["per_copy"] = {f"{use.name}.{i}": sum(n["params"] for n in members if _under(n["name"], f"{use.name}.{i}"))
                                 for i in range(use.repeat)}
        blocks.append(entry)
    outputs = [{"name": k, "ref": str(r), **(type_dict(graph.type_of(r)) or {"shape": None, "dtype": None})}
               for k, r in graph.outputs.items()]
    return {
        "name": graph.name,
        "file": graph.file,
        "inputs": [{"name": k, **type_dict(gi.type), "optional": gi.optional} for k, gi in graph.inputs.items()],
        "nodes": nodes,
        "outputs": outputs,
        "blocks": blocks,
        "total_params": graph.total_params,
        "n_nodes": len(nodes),
        "networks": {net: {"params": g.total_params, "nodes": len(g.nodes), "inputs": list(g.inputs),
                           "outputs": list(g.outputs)} for net, g in graph.networks.items()},
    }


def node_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(node, op, output shape(s), params) rows as text; multi-output nodes list ``name=type`` pairs."""
    rows = []
    for n in summary["nodes"]:
        outs = n["outputs"]
        if len(outs) == 1:
            shape = type_text(next(iter(outs.values())))
        else:
            shape = ", ".join(f"{k}={type_text(v)}" for k, v in outs.items()) or "?"
        params = f"{n['params']:,}"
        if n["shares_params_with"]:
            params = f"0 (shared with {n['shares_params_with']})"
        elif n["refs"] and not n["params"]:
            params = "0 (" + ", ".join(f"{k}: {v}" for k, v in n["refs"].items()) + ")"
        rows.append((n["name"], n["op"], shape, params))
    return rows


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        parts = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [line(headers), rule, *(line(r) for r in rows)]


def format_table(summary: dict[str, Any]) -> str:
    """The summary as plain fixed-width text (no third-party packages)."""
    out = [f"{summary['name']} ({summary['file']})", ""]
    if summary["inputs"]:
        out.append("inputs:")
        for i in summary["inputs"]:
            opt = " (optional)" if i["optional"] else ""
            out.append(f"  {i['name']}: {type_text(i)}{opt}")
        out.append("")
    out.extend(_table(("node", "op", "output", "params"), node_rows(summary), {3}))
    out.append("")
    out.append("outputs:")
    for o in summary["outputs"]:
        out.append(f"  {o['name']} = {o['ref']}: {type_text(o if o['shape'] is not None else None)}")
    if summary["blocks"]:
        out.append("")
        rows = []
        for b in summary["blocks"]:
            rows.append((b["name"], b["block"], f"{b['repeat']}" + (" (shared)" if b["shared"] else ""), f"{b['params']:,}"))
            rows.extend((f"  {copy}", "", "", f"{n:,}") for copy, n in b.get("per_copy", {}).items())
        out.extend(_table(("block use", "block", "repeat", "params"), rows, {2, 3}))
    if summary.get("networks"):
        out.append("")
        out.extend(_table(("network", "nodes", "params"), [(k, f"{v['nodes']}", f"{v['params']:,}")
                                                           for k, v in summary["networks"].items()], {1, 2}))
    out.append("")
    out.append(f"total: {summary['total_params']:,} parameters in {summary['n_nodes']} nodes")
    return "\n".join(out)
