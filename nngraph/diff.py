"""``nngraph diff A.yaml B.yaml``: what changed between two specs as graphs, not as text.

Nodes are matched by name; a node only in A and one only in B with the same op, op parameters and
parameter count are one node *renamed* (inputs may differ: they name renamed nodes too). For each node in
both: op parameters changed (``heads: 12 -> 16``), output shapes changed, parameter count changed. Per block
use and in total: parameter and forward-FLOP deltas at the sizes given (:mod:`nngraph.cost`). Formatting,
comments and var names do not show: only what the model computes. ``--fail-on params`` exits 1 when a
parameter count changed, ``--fail-on shapes`` when an output shape did (a CI gate on a pull request).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from .cost.model import node_cost
from .inspect import _under
from .ir import Graph, Node


def _shape(node: Node) -> str:
    return ", ".join(f"{t.dtype}[{', '.join(map(str, t.shape))}]" for t in node.outputs.values())


def _key(node: Node) -> str:
    return json.dumps([node.op, node.params, node.n_params or 0], sort_keys=True, default=str)


def _renames(only_a: list[Node], only_b: list[Node]) -> list[tuple[str, str]]:
    """Pairs (a, b) of unmatched nodes with equal op, params and parameter count, in graph order."""
    pool: dict[str, list[str]] = {}
    for n in only_b:
        pool.setdefault(_key(n), []).append(n.name)
    out = []
    for n in only_a:
        if pool.get(_key(n)):
            out.append((n.name, pool[_key(n)].pop(0)))
    return out


def _changes(a: Node, b: Node) -> dict[str, Any]:
    ch: dict[str, Any] = {}
    if a.op != b.op:
        ch["op"] = [a.op, b.op]
    params = {k: [a.params.get(k), b.params.get(k)] for k in sorted(set(a.params) | set(b.params))
              if a.params.get(k) != b.params.get(k)}
    if params:
        ch["params"] = params
    if _shape(a) != _shape(b):
        ch["shape"] = [_shape(a), _shape(b)]
    if (a.n_params or 0) != (b.n_params or 0):
        ch["n_params"] = [a.n_params or 0, b.n_params or 0]
    return ch


def _flops(g: Graph, sizes: Mapping[str, int]) -> dict[str, int]:
    return {name: node_cost(g, node, sizes).flops for name, node in g.nodes.items()}


def diff_graphs(a: Graph, b: Graph, sizes: Mapping[str, int]) -> dict[str, Any]:
    """The semantic diff as plain data: added, removed, renamed, changed nodes; block and total deltas."""
    only_a = [n for k, n in a.nodes.items() if k not in b.nodes]
    only_b = [n for k, n in b.nodes.items() if k not in a.nodes]
    renamed = _renames(only_a, only_b)
    gone, new = {x for x, _ in renamed}, {y for _, y in renamed}
    changed = {k: c for k in a.nodes if k in b.nodes and (c := _changes(a.nodes[k], b.nodes[k]))}
    fa, fb = _flops(a, sizes), _flops(b, sizes)
    blocks = []
    for use in {u.name: u for u in [*a.block_uses, *b.block_uses]}.values():
        pa = sum(a.nodes[k].n_params or 0 for k in a.nodes if _under(k, use.name))
        pb = sum(b.nodes[k].n_params or 0 for k in b.nodes if _under(k, use.name))
        fl_a = sum(v for k, v in fa.items() if _under(k, use.name))
        fl_b = sum(v for k, v in fb.items() if _under(k, use.name))
        if (pa, fl_a) != (pb, fl_b):
            blocks.append({"name": use.name, "params": [pa, pb], "flops": [fl_a, fl_b]})
    return {"a": a.file, "b": b.file, "sizes": dict(sizes),
            "added": [{"name": n.name, "op": n.op, "params": n.n_params or 0} for n in only_b if n.name not in new],
            "removed": [{"name": n.name, "op": n.op, "params": n.n_params or 0} for n in only_a if n.name not in gone],
            "renamed": [{"from": x, "to": y} for x, y in renamed], "changed": changed, "blocks": blocks,
            "total": {"params": [a.total_params, b.total_params], "flops": [sum(fa.values()), sum(fb.values())]}}


def failed(d: dict[str, Any], on: list[str]) -> list[str]:
    """The ``--fail-on`` kinds the diff triggers: params (a parameter count changed), shapes (an output shape)."""
    hit = []
    counts = d["added"] or d["removed"] or d["total"]["params"][0] != d["total"]["params"][1] or \
        any("n_params" in c for c in d["changed"].values())
    if "params" in on and counts:
        hit.append("params")
    if "shapes" in on and any("shape" in c for c in d["changed"].values()):
        hit.append("shapes")
    return hit


def _delta(pair: list[int]) -> str:
    return f"{pair[0]:,} -> {pair[1]:,} ({pair[1] - pair[0]:+,})"


def format_diff(d: dict[str, Any], markdown: bool = False) -> str:
    """Text, or Markdown for a pull-request comment."""
    b, code = ("**", "`") if markdown else ("", "")
    out = [f"{'### ' if markdown else ''}diff {d['a']} -> {d['b']}", ""]
    for title, items, fmt in (("added", d["added"], lambda x: f"{code}{x['name']}{code} ({x['op']}, {x['params']:,} params)"),
                              ("removed", d["removed"], lambda x: f"{code}{x['name']}{code} ({x['op']}, {x['params']:,} params)"),
                              ("renamed", d["renamed"], lambda x: f"{code}{x['from']}{code} -> {code}{x['to']}{code}")):
        out.extend([f"{b}{title}{b}: {len(items)}"] + [f"- {fmt(x)}" for x in items])
    out.append(f"{b}changed{b}: {len(d['changed'])}")
    for name, c in d["changed"].items():
        bits = [f"{k} {v[0]} -> {v[1]}" for k, v in c.get("params", {}).items()]
        bits += [f"shape {c['shape'][0]} -> {c['shape'][1]}"] if "shape" in c else []
        bits += [f"params {_delta(c['n_params'])}"] if "n_params" in c else []
        bits += [f"op {c['op'][0]} -> {c['op'][1]}"] if "op" in c else []
        out.append(f"- {code}{name}{code}: " + "; ".join(bits))
    if d["blocks"]:
        out.append(f"{b}blocks{b}:")
        out.extend(f"- {code}{x['name']}{code}: params {_delta(x['params'])}, FLOPs {_delta(x['flops'])}" for x in d["blocks"])
    sizes = ", ".join(f"{k}={v}" for k, v in d["sizes"].items())
    out.append(f"{b}total{b}: params {_delta(d['total']['params'])}; forward FLOPs at {sizes} {_delta(d['total']['flops'])}")
    return "\n".join(out)
