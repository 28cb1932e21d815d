"""``nngraph cost``: per node, per block use and in total, as JSON-ready data and as a text table.

Totals: parameters and their bytes per dtype; forward FLOPs (+ backward in training: each op's rule,
:mod:`nngraph.cost.rules`);
activation memory kept for backward (training) or peak live tensors (inference); KV-cache bytes per
generated token; optimizer state bytes (training); FLOPs per token (graphs with an integer token input);
and, for a target with a roofline, the estimated time with each attention node's kernel and why.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..inspect import _table, _under
from ..ir import Graph
from ..types import is_int
from .model import DEFAULT_SIZE, NodeCost, concrete, grad_nodes, node_cost, optimizer_states, peak_live_bytes


def sizes_for(graph: Graph, dims: Mapping[str, int], batch: int | None) -> tuple[dict[str, int], list[str]]:
    """Every symbol of the graph's values with a size (given, ``--batch``, else :data:`DEFAULT_SIZE`); the defaulted ones."""
    from ..symdim import symbols_of

    sizes, defaulted = dict(dims), []
    if batch is not None:
        sizes["batch"] = batch
    types = [gi.type for gi in graph.inputs.values()] + [t for n in graph.nodes.values() for t in n.outputs.values()]
    for t in types:  # input dims first, then dims nodes introduce (num_graphs of a pooling)
        for d in t.shape:
            for sym in symbols_of(d) if isinstance(d, str) else ():
                if sym not in sizes:
                    sizes[sym] = 1 if sym == "batch" else DEFAULT_SIZE
                    defaulted.append(f"{sym}={sizes[sym]}")
    return sizes, defaulted


def tokens_of(graph: Graph, sizes: Mapping[str, int]) -> int | None:
    """Tokens in one call: the elements of the first integer input of rank 2 ([batch, seq]); None if none."""
    for gi in graph.inputs.values():
        if is_int(gi.type.dtype) and gi.type.rank == 2 and not gi.optional:
            return math.prod(concrete(gi.type, sizes) or (1,))
    return None


def _sum(costs: list[NodeCost], key: str) -> int:
    return sum(getattr(c, key) for c in costs)


def cost_report(graph: Graph, sizes: Mapping[str, int], mode: str = "inference", target: str | None = None) -> dict[str, Any]:
    """The whole cost as plain data (what ``--format json`` prints)."""
    grads = grad_nodes(graph)
    costs = {name: node_cost(graph, node, sizes, grads) for name, node in graph.nodes.items()}
    times = {}
    tinfo = None
    if target is not None:
        from nngraph.compilers.passes.roofline import estimate
        from nngraph.compilers.targets import get_target

        t = get_target(target)
        tinfo = {"name": t.name, "describe": t.describe(), "roofline": t.data.get("roofline")}
        times = estimate(graph, costs, t, mode, sizes)
    nodes = []
    for name, c in costs.items():
        row = {"name": name, "op": c.op, "scope": c.scope, "shape": c.shape, "params": c.params,
               "param_bytes": c.param_bytes, "flops": c.flops, "out_bytes": c.out_bytes,
               "io_bytes": c.io_bytes, "kernels": c.kernels, **c.extra}
        if c.dense_flops != c.flops:
            row["dense_flops"] = c.dense_flops
        if name in times:
            tm = times[name]
            row.update({"ms": tm.ms, "bound": tm.bound, **({"kernel": tm.kernel, "why": tm.why} if tm.kernel else {})})
        nodes.append(row)
    return {"name": graph.name, "file": graph.file, "mode": mode, "sizes": dict(sizes), "target": tinfo,
            "nodes": nodes, "blocks": _blocks(graph, nodes), "totals": _totals(graph, costs, nodes, sizes, mode)}


#: what a block's row sums over its nodes' rows
SUMMED = ("params", "param_bytes", "flops", "out_bytes", "ms")


def scope_sums(nodes: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The totals of the node rows under ``prefix`` (a block use ``h``, or one copy ``h.3``): how many nodes,
    how many of each op, and Σ params, parameter bytes, FLOPs, output bytes and ms over them."""
    members = [n for n in nodes if _under(n["name"], prefix)]
    ops: dict[str, int] = {}
    for n in members:
        ops[n["op"]] = ops.get(n["op"], 0) + 1
    return {"nodes": len(members), "ops": ops, **{key: sum(n.get(key, 0) for n in members) for key in SUMMED}}


def _blocks(graph: Graph, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": use.name, "block": use.block, "repeat": use.repeat, **scope_sums(nodes, use.name)}
            for use in graph.block_uses]


def _totals(graph: Graph, costs: dict[str, NodeCost], nodes: list[dict[str, Any]], sizes: Mapping[str, int],
            mode: str) -> dict[str, Any]:
    allc = list(costs.values())
    by_dtype: dict[str, int] = {}
    for c in allc:
        if c.params:
            by_dtype[c.param_dtype] = by_dtype.get(c.param_dtype, 0) + c.param_bytes
    fwd = _sum(allc, "flops")
    tokens = tokens_of(graph, sizes)
    out: dict[str, Any] = {
        "params": graph.total_params, "param_bytes": by_dtype, "flops_forward": fwd,
        "flops_per_token": fwd / tokens if tokens else None,
        "kv_cache_bytes_per_token": _sum(allc, "kv_bytes_per_token") * sizes.get("batch", 1),
    }
    if mode == "training":
        kind, states = optimizer_states(graph)
        out.update({"flops_backward": _sum(allc, "backward_flops"), "activation_bytes": _sum(allc, "out_bytes"),
                    "optimizer": kind, "optimizer_state_bytes": states * 4 * graph.total_params,
                    "gradient_bytes": sum(by_dtype.values())})
    else:
        out["peak_live_bytes"] = peak_live_bytes(graph, costs, sizes)
    if any("ms" in n for n in nodes):
        out["ms"] = sum(n.get("ms", 0.0) for n in nodes)
    return out


def _si(x: float, unit: str = "") -> str:
    for scale, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {p}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def _mib(x: float) -> str:
    return f"{x / 2 ** 20:,.2f} MiB"


def format_text(rep: dict[str, Any]) -> str:
    """The report as fixed-width text: nodes, block uses, totals."""
    sizes = ", ".join(f"{k}={v}" for k, v in rep["sizes"].items())
    out = [f"{rep['name']} ({rep['file']}): {rep['mode']} at {sizes}"]
    if rep["target"]:
        roof = rep["target"]["roofline"] or {}
        out.append(f"target: {rep['target']['describe']}; roofline: {roof.get('source', 'none in this profile')}")
    out.append("")
    timed = any("ms" in n for n in rep["nodes"])
    heads = ("node", "op", "output", "params", "FLOPs", "out") + (("ms", "kernel") if timed else ())
    rows = [(n["name"], n["op"], n["shape"], f"{n['params']:,}", _si(n["flops"]), _mib(n["out_bytes"]))
            + ((f"{n.get('ms', 0):.3g}", n.get("kernel") or n.get("bound", "")) if timed else ()) for n in rep["nodes"]]
    out.extend(_table(heads, rows, {3, 4, 5, 6}))
    if rep["blocks"]:
        out.append("")
        brows = [(b["name"], b["block"], str(b["repeat"]), f"{b['params']:,}", _si(b["flops"]))
                 + ((f"{b['ms']:.3g}",) if timed else ()) for b in rep["blocks"]]
        out.extend(_table(("block use", "block", "repeat", "params", "FLOPs") + (("ms",) if timed else ()), brows,
                          {2, 3, 4, 5}))
    out.append("")
    out.extend(_total_lines(rep["totals"]))
    return "\n".join(out)


def _total_lines(t: dict[str, Any]) -> list[str]:
    lines = [f"parameters: {t['params']:,} (" + ", ".join(f"{k} {_mib(v)}" for k, v in t["param_bytes"].items()) + ")",
             f"FLOPs forward: {_si(t['flops_forward'])} ({t['flops_forward']:,})"]
    if t.get("flops_per_token") is not None:
        lines.append(f"FLOPs per token: {_si(t['flops_per_token'])}")
    if "flops_backward" in t:
        ratio = t["flops_backward"] / max(1, t["flops_forward"])
        lines.append(f"FLOPs backward: {_si(t['flops_backward'])} ({ratio:.2f}x forward)")
        lines.append(f"activations kept for backward: {_mib(t['activation_bytes'])}")
        lines.append(f"gradients: {_mib(t['gradient_bytes'])}; optimizer state ({t['optimizer']}): "
                     f"{_mib(t['optimizer_state_bytes'])}")
    else:
        lines.append(f"peak live tensors: {_mib(t['peak_live_bytes'])}")
    if t["kv_cache_bytes_per_token"]:
        lines.append(f"KV cache per token: {t['kv_cache_bytes_per_token']:,} bytes")
    if "ms" in t:
        lines.append(f"estimated time: {t['ms']:.4g} ms")
    return lines
