"""ONNX translations of ATen ops that the TorchScript exporter lacks or gets wrong, registered only while exporting.

torch 2.13's TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), which nngraph uses
(see :mod:`.export` for why), has no ``aten::rms_norm`` and exports ``index_add`` with duplicate
indices as a plain ``ScatterND`` (the last write wins instead of the sum: a GCN's degree count
comes out wrong), refuses ``scatter_reduce(include_self=False)`` and ``bincount``. These
translations are exact:

* ``rms_norm(x, shape, w, eps)`` -> ``x · 1/√(mean(x², last dims) + eps) · w`` (eps None: the
  dtype's machine epsilon, as torch);
* ``index_add(self, dim, index, src, alpha)`` -> ``ScatterElements(self, index broadcast to src,
  src·alpha, axis=dim, reduction="add")`` (duplicates accumulate);
* ``scatter_reduce(self, dim, index, src, reduce, include_self)`` -> ``ScatterElements`` with
  ``add``/``mul``/``max``/``min``; ``include_self=False`` scatters into the reduction's identity
  and keeps ``self`` where nothing arrived; ``mean`` = sum / count;
* ``bincount(x, None, minlength)`` -> counts of size max(max(x) + 1, minlength) via a scatter-add
  (``minlength`` may be a run-time size, e.g. the node count);
* ``adaptive_avg_pool2d`` whose output size does not divide a static input size (VGG's 7x7 head
  on a small image) -> two MatMuls with constant bin-averaging matrices (torch's overlapping bins).

:func:`registered` is a context manager: the translations are registered for the export and
removed afterwards, so other exports in the process see torch's own table.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch.onnx import symbolic_helper as sh



def _const(g, value, dtype=torch.int64):
    return g.op("Constant", value_t=torch.tensor(value, dtype=dtype))


def _expand_index(g, index, like, dim: int):
    """index [E] -> broadcast to ``like``'s shape along every axis but ``dim`` (ScatterElements needs it)."""
    rank = sh._get_tensor_rank(like)
    if rank is None:
        raise torch.onnx.errors.SymbolicValueError("index_add/scatter needs a source of known rank", like)
    idx_rank = sh._get_tensor_rank(index)
    if idx_rank == rank:
        return index
    shape = [1] * rank
    shape[dim] = -1
    return g.op("Expand", g.op("Reshape", index, _const(g, shape)), g.op("Shape", like))


@sh.parse_args("v", "is", "v", "v")
def rms_norm(g, x, normalized_shape, weight, eps):
    eps_value = sh._maybe_get_const(eps, "f")
    if eps_value is None or sh._is_none(eps):
        eps_value = float(torch.finfo(torch.float32).eps)
    axes = list(range(-len(normalized_shape), 0))
    if g.opset >= 18:  # ReduceMean-18 takes the axes as an input, earlier versions as an attribute
        mean_sq = g.op("ReduceMean", g.op("Mul", x, x), _const(g, axes), keepdims_i=1)
    else:
        mean_sq = g.op("ReduceMean", g.op("Mul", x, x), axes_i=axes, keepdims_i=1)
    inv = g.op("Reciprocal", g.op("Sqrt", g.op("Add", mean_sq, _const(g, float(eps_value), torch.float32))))
    out = g.op("Mul", x, inv)
    if weight is not None and not sh._is_none(weight):
        out = g.op("Mul", out, weight)
    return out


@sh.parse_args("v", "i", "v", "v", "v")
def index_add(g, self, dim, index, source, alpha=None):
    alpha_value = sh._maybe_get_const(alpha, "f") if alpha is not None and not sh._is_none(alpha) else 1
    if alpha_value not in (1, 1.0):
        source = g.op("Mul", source, g.op("CastLike", _const(g, float(alpha_value), torch.float32), source))
    rank = sh._get_tensor_rank(self)
    dim = dim % rank if rank else dim
    return g.op("ScatterElements", self, _expand_index(g, index, source, dim), source, axis_i=dim,
                reduction_s="add")


_REDUCTION = {"sum": "add", "prod": "mul", "amax": "max", "amin": "min"}


@sh.parse_args("v", "i", "v", "v", "s", "b")
def scatter_reduce(g, self, dim, index, src, reduce, include_self):
    rank = sh._get_tensor_rank(self)
    dim = dim % rank if rank else dim
    if reduce == "mean":
        ones = g.op("CastLike", g.op("ConstantOfShape", g.op("Shape", src), value_t=torch.tensor([1.0])), src)
        zeros = g.op("Mul", self, g.op("CastLike", _const(g, 0.0, torch.float32), self))
        total = g.op("ScatterElements", self if include_self else zeros, index, src, axis_i=dim, reduction_s="add")
        count = g.op("ScatterElements", zeros, index, ones, axis_i=dim, reduction_s="add")
        if include_self:
            count = g.op("Add", count, g.op("CastLike", _const(g, 1.0, torch.float32), self))
            return g.op("Div", total, count)
        has = g.op("Greater", count, g.op("CastLike", _const(g, 0.0, torch.float32), count))
        safe = g.op("Max", count, g.op("CastLike", _const(g, 1.0, torch.float32), count))
        return g.op("Where", has, g.op("Div", total, safe), self)
    mode = _REDUCTION[reduce]
    if include_self:
        return g.op("ScatterElements", self, index, src, axis_i=dim, reduction_s=mode)
    identity = {"add": 0.0, "mul": 1.0, "max": float("-inf"), "min": float("inf")}[mode]
    base = g.op("Expand", g.op("CastLike", _const(g, identity, torch.float32), self), g.op("Shape", self))
    scattered = g.op("ScatterElements", base, index, src, axis_i=dim, reduction_s=mode)
    zeros = g.op("Expand", g.op("CastLike", _const(g, 0.0, torch.float32), self), g.op("Shape", self))
    ones = g.op("Expand", g.op("CastLike", _const(g, 1.0, torch.float32), src), g.op("Shape", src))
    count = g.op("ScatterElements", zeros, index, ones, axis_i=dim, reduction_s="add")
    has = g.op("Greater", count, zeros)
    return g.op("Where", has, scattered, self)


@sh.parse_args("v", "v", "v")
def bincount(g, x, weights, minlength):
    if weights is not None and not sh._is_none(weights):
        raise torch.onnx.errors.SymbolicValueError("bincount with weights is not supported in ONNX export", x)
    size = g.op("Add", g.op("ReduceMax", x, keepdims_i=1), _const(g, [1]))
    low = sh._maybe_get_const(minlength, "i")
    low = _const(g, [int(low)]) if isinstance(low, int) else g.op("Reshape", g.op("Cast", minlength, to_i=7),
                                                                     _const(g, [1]))
    size = g.op("Max", size, low)
    # an empty x: ReduceMax of nothing is the dtype's lowest value, so the Max with minlength rules
    zeros = g.op("ConstantOfShape", size, value_t=torch.tensor([0], dtype=torch.int64))
    ones = g.op("Expand", _const(g, 1), g.op("Shape", x))
    return g.op("ScatterElements", zeros, x, ones, axis_i=0, reduction_s="add")


def _pool_matrix(size: int, out: int) -> torch.Tensor:
    """[out, size]: row i averages input positions floor(i·size/out) .. ceil((i+1)·size/out) - 1 (torch's bins)."""
    m = torch.zeros(out, size)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


@sh.parse_args("v", "is")
def adaptive_avg_pool2d(g, x, output_size):
    sizes = sh._get_tensor_sizes(x)
    oh, ow = (list(output_size) * 2)[:2] if len(output_size) == 1 else output_size
    h, w = (sizes or [None] * 4)[-2:]
    if not isinstance(h, int) or not isinstance(w, int) or (h % oh == 0 and w % ow == 0):
        from torch.onnx import symbolic_opset9

        return symbolic_opset9.adaptive_avg_pool2d(g, x, output_size)
    # torch's uneven bins (overlapping windows): two constant pooling matrices, exact up to summation order
    rows = g.op("Constant", value_t=_pool_matrix(h, oh))
    cols = g.op("Constant", value_t=_pool_matrix(w, ow).t().contiguous())
    return g.op("MatMul", g.op("MatMul", rows, x), cols)


TABLE = {
    "aten::rms_norm": rms_norm,
    "aten::index_add": index_add,
    "aten::scatter_reduce": scatter_reduce,
    "aten::bincount": bincount,
    "aten::adaptive_avg_pool2d": adaptive_avg_pool2d,
}


@contextlib.contextmanager
def registered(opset: int) -> Iterator[None]:
    """Register :data:`TABLE` for export opset ``opset`` for the duration of the block.

    Registered at the export's own opset: a custom translation wins over torch's built-in one
    registered at the same or a lower opset (torch's ``scatter_reduce`` is registered at 16).
    """
    done = []
    try:
        for name, fn in TABLE.items():
            torch.onnx.register_custom_op_symbolic(name, fn, opset)
            done.append(name)
        yield
    finally:
        for name in done:
            torch.onnx.unregister_custom_op_symbolic(name, opset)
