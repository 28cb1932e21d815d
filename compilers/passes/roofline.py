"""Estimated time of a graph on a target: a roofline per node, the lowering's kernel for attention.

A node's time is ``max(FLOPs / achieved(FLOPs / P), bytes / bandwidth) + node_overhead_ms + K · kernel_ms``
(Williams et al., "Roofline", 2009, plus fixed costs that dominate small models: one per node call -- Python
dispatch of the module -- and one per aten kernel the node launches, K, the op's registered ``kernels=``), where
``achieved`` is the FLOP/s the profile's ``gemm_curve`` gives one product of FLOPs / P on this machine (P the op's
registered ``products=``: an MoE's experts, a recurrence's steps are many small products; :func:`achieved_flops`:
small products run far below the peak; convolutions have their own curve), with the target profile's
``roofline`` entry (``compilers/targets/profiles.json``: the CPU's measured by ``nngraph calibrate``, GPUs'
from datasheets, each marked by its ``source``; a profile without ``kernel_ms`` charges ``op_overhead_ms``). An attention node is
split: its projections go through the roofline, its scores and values cost what the kernel the
lowering pass chose for it costs in that kernel's own calibrated model (per batch row, × batch). In
training a node costs (forward + backward FLOPs) / forward FLOPs times its forward (:mod:`nngraph.cost.rules`:
3× for most, 2× for a layer reading data); attention nodes and nodes without FLOPs 3×.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from nngraph.cost.model import NodeCost
from nngraph.ir import Graph
from nngraph.registry import lookup

from ..targets import Target, get_target
from .explain import _why, explain


@dataclass
class NodeTime:
    """Estimated milliseconds of one node, the bound that set it, and the attention kernel (with why)."""

    ms: float
    bound: str                       # compute | memory | kernel
    kernel: str | None = None
    why: str | None = None


def achieved_flops(flops: float, roof: Mapping[str, Any], dtype: str, family: str = "default") -> float:
    """FLOP/s a node of ``flops`` FLOPs reaches: the profile's ``gemm_curve`` for the op's family (else
    ``default``) read at ``flops`` (:func:`_loglog`: linear in log-log between measured points) -- scaled
    by ``peak_flops[dtype] / peak_flops[float32]`` for another dtype; the dtype's peak without a curve."""
    peaks = roof["peak_flops"]
    peak = peaks.get(dtype) or peaks.get("float32") or max(peaks.values())
    curves = roof.get("gemm_curve")
    if not curves or flops <= 0:
        return peak
    points = curves.get(family) or curves["default"]
    scale = peak / (peaks.get("float32") or peak)
    return scale * _loglog(flops, points)


def _loglog(x: float, points: list[list[float]]) -> float:
    """``points`` [(FLOPs, FLOP/s), ...] (sorted by FLOPs) read at ``x``: linear in log-log between points, flat
    above the last; below the first, the first point's time (``y0 · x / x0``): a product smaller than the smallest
    measured is no faster than it -- its fixed cost (a oneDNN convolution's is tens of µs) is what it pays."""
    if x <= points[0][0]:
        return points[0][1] * x / points[0][0]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1:
            w = math.log(x / x0) / math.log(x1 / x0)
            return math.exp((1 - w) * math.log(y0) + w * math.log(y1))
    return points[-1][1]


def kernel_ms(roof: Mapping[str, Any]) -> float:
    """The fixed cost of one aten kernel: the profile's ``kernel_ms``; a profile calibrated before it was measured
    falls back to ``op_overhead_ms`` (the dispatch of a one-element op, a lower bound), else 0."""
    return float(roof.get("kernel_ms", roof.get("op_overhead_ms", 0.0)))


def fixed_ms(cost: NodeCost, roof: Mapping[str, Any]) -> float:
    """A node's fixed cost per call: ``node_overhead_ms + kernels · kernel_ms``."""
    return roof.get("node_overhead_ms", 0.0) + cost.kernels * kernel_ms(roof)


def _roofline_ms(flops: float, nbytes: float, roof: Mapping[str, Any], dtype: str,
                 family: str = "default", products: int = 1) -> tuple[float, str]:
    """``max(FLOPs / achieved(FLOPs / products), bytes / bandwidth)`` in ms, and which bound set it."""
    rate = achieved_flops(flops / max(products, 1), roof, dtype, family)
    compute, memory = flops / rate, nbytes / roof["bandwidth"]
    return 1e3 * max(compute, memory), "compute" if compute >= memory else "memory"


def _curve(opdef: Any) -> str:
    """The ``gemm_curve`` an op's products read: its registered ``curve``, else its family's name."""
    return opdef.curve or opdef.family


def _core_flops(graph: Graph, name: str, cost: NodeCost, batch_rows: int) -> int:
    """The dense scores + values FLOPs of an attention node (4·B·H·d·T·S), what its kernel cost replaces."""
    att = graph.nodes[name].meta["attention"]
    per_pair = 4 * att.heads * att.head_dim
    return min(cost.dense_flops, per_pair * batch_rows * cost.extra.get("pairs_dense", 0))


def estimate(graph: Graph, costs: Mapping[str, NodeCost], target: "Target | str", mode: str,
             sizes: Mapping[str, int]) -> dict[str, NodeTime]:
    """Per node: estimated ms on ``target`` in ``mode`` (inference | training); {} without a roofline entry."""
    target = get_target(target)
    roof = target.data.get("roofline")
    if not roof:
        return {}
    factor = 3.0 if mode == "training" else 1.0
    decisions = {d.node: d for d in explain(graph, target, mode, dims=dict(sizes))}
    out: dict[str, NodeTime] = {}
    for name, c in costs.items():
        dtype = target.compute_dtype(c.param_dtype)
        # attention written out of primitives is fused to an sdpa node the graph here does not hold: its parts
        # go through the roofline one by one
        d = decisions.get(name) if "attention" in graph.nodes[name].meta else None
        if d is None:
            ms, bound = _roofline_ms(c.flops, c.io_bytes, roof, dtype, _curve(lookup(c.op)), c.products)
            ms += fixed_ms(c, roof)
            # training: forward + the node's own backward FLOPs (a first layer's backward is half another's)
            out[name] = NodeTime(ms * (1 + c.backward_flops / c.flops if factor > 1 and c.flops else factor), bound)
            continue
        batch = c.extra.get("batch", 1)
        chosen = next((x for x in d.candidates if x.kernel == d.kernel and x.costs), None)
        if chosen is not None:  # the projections through the roofline, the scores and values the kernel's cost
            core = _core_flops(graph, name, c, batch)
            ms = _roofline_ms(c.dense_flops - core, c.io_bytes, roof, dtype)[0] + batch * chosen.costs[d.lengths[0]]
            bound = "kernel"
        else:  # no cost model (an ONNX Runtime target): the visible pairs through the roofline
            ms, bound = _roofline_ms(c.flops, c.io_bytes, roof, dtype)
        out[name] = NodeTime((ms + fixed_ms(c, roof)) * factor, bound, d.kernel, _why(d))
    return out
