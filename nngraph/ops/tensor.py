"""Tensor and structure ops: elementwise arithmetic, matmul, concat/split, reshapes, softmax, constants.

These carry no learnable state except ``parameter``. Formulas are the usual
tensor algebra (seed 000, "Neural networks": y = Wx + b is a matmul plus a
broadcast add).
"""

from __future__ import annotations

import math

from typing import Any

from ..registry import InferCtx, Param, op, p_bool, p_enum, p_float, p_int, p_int_list
from ..cost.rules import CostCtx
from ..types import DTYPES, Dim, TensorType, dim_add, dim_floordiv, dim_mul, dim_prod, dims_differ, format_shape, is_float
from ._shapes import broadcast, norm_axis

def _axis(doc: str, default: Any = -1) -> Param:
    return p_int(doc, default, min=None)


def _shape_param_check(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not value:
        return [("", f"expected a non-empty list of dims, got {value!r}")]
    for i, d in enumerate(value):
        if isinstance(d, bool) or not (isinstance(d, int) and d >= -1 or isinstance(d, str) and d.isidentifier()):
            return [(str(i), f"dims are integers >= -1 or symbolic names, got {d!r}")]
    if sum(1 for d in value if d == -1) > 1:
        return [("", "at most one dim may be -1")]
    return []


SHAPE_PARAM = Param("custom", "target shape: ints, symbolic names, 0 to keep the input dim, one -1 to infer",
                    schema={"type": "array", "items": {"anyOf": [{"type": "integer", "minimum": -1}, {"type": "string"}]}},
                    check=_shape_param_check)


def same_dtype(ctx: InferCtx, types: list[TensorType]) -> None:
    """Inputs combined into one tensor share a dtype: torch would promote silently, ONNX refuses."""
    for t in types:
        if t.dtype != types[0].dtype:
            ctx.fail(f"inputs have different dtypes: {types[0].dtype} and {t.dtype}", "cast one of them with a 'cast' node")


def _elementwise(ctx: InferCtx) -> TensorType:
    types = list(ctx.variadic)
    same_dtype(ctx, types)
    shape = types[0].shape
    for t in types[1:]:
        shape = broadcast(ctx, TensorType(shape, t.dtype), t)
    return TensorType(shape, types[0].dtype)


for _name, _sym in (("add", "+"), ("mul", "*"), ("sub", "-")):
    op(_name, family="tensor", inputs=("*xs",), example={"in": ["a", "b"]},
       shape_hint="elementwise ops broadcast their inputs NumPy-style")(
        lambda ctx: _elementwise(ctx)).doc = f"Elementwise ``{_sym}`` of two or more inputs with NumPy broadcasting."


def _matmul_flops(c: CostCtx) -> int:
    """2·Πbatch·M·K·N for out [..., M, N] and inner size K (the last dim of a)."""
    return 2 * math.prod(c.out) * c.inputs["a"][-1]


def _matmul_backward(c: CostCtx) -> int:
    """One forward-sized product per operand that needs a gradient: ``dA = dC Bᵀ``, ``dB = Aᵀ dC``."""
    return c.forward * (int(c.needs_grad("a")) + int(c.needs_grad("b")))


@op("matmul", family="tensor", inputs=("a", "b"), flops=_matmul_flops, backward=_matmul_backward, params={
    "transpose_b": p_bool("multiply by b transposed (last two dims)", False),
    "scale": p_float("multiply the product by this factor", 1.0),
}, example={"in": ["q", "k"], "transpose_b": True})
def matmul(ctx: InferCtx) -> TensorType:
    """Batched matrix product ``a @ b`` (``a @ bᵀ`` with transpose_b), batch dims broadcast; seed 000 "Neural networks"."""
    a, b = ctx.inputs["a"], ctx.inputs["b"]
    same_dtype(ctx, [a, b])
    ctx.need_min_rank(a, 2, "a")
    ctx.need_min_rank(b, 2, "b")
    b_rows, b_cols = (b.shape[-1], b.shape[-2]) if ctx.params["transpose_b"] else (b.shape[-2], b.shape[-1])
    ctx.need_dim(b_rows, a.shape[-1], f"inner dims of {format_shape(a.shape)} @ {format_shape(b.shape)}",
                 hint="the last dim of a must equal the rows of b (set transpose_b to multiply by bᵀ)")
    batch = broadcast(ctx, TensorType(a.shape[:-2]), TensorType(b.shape[:-2]))
    return TensorType(batch + (a.shape[-2], b_cols), a.dtype)


@op("concat", family="tensor", inputs=("*xs",), params={"dim": _axis("dimension to join along")},
    example={"in": ["a", "b"], "dim": -1})
def concat(ctx: InferCtx) -> TensorType:
    """Join tensors along ``dim``; every other dim must match."""
    types = ctx.variadic
    same_dtype(ctx, types)
    rank = types[0].rank
    axis = norm_axis(ctx, ctx.params["dim"], rank)
    total: Any = 0
    for t in types:
        if t.rank != rank:
            ctx.fail(f"inputs have different ranks: {format_shape(types[0].shape)} and {format_shape(t.shape)}")
        for i, (da, db) in enumerate(zip(types[0].shape, t.shape)):
            if i != axis and dims_differ(da, db):
                ctx.fail(f"dim {i} differs: {format_shape(types[0].shape)} vs {format_shape(t.shape)}",
                         f"only dim {axis} (the concat dim) may differ")
        total = dim_add(total, t.shape[axis])
    shape = list(types[0].shape)
    shape[axis] = total
    return TensorType(tuple(shape), types[0].dtype)


def _split_outputs(params: dict) -> tuple[str, ...]:
    names = params.get("names")
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    sizes = params.get("sizes")
    return tuple(f"out{i}" for i in range(len(sizes) if isinstance(sizes, list) else 1))


def names_check(value: Any) -> list[tuple[str, str]]:
    """A list of unique output names (identifiers), or None."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.isidentifier() for v in value):
        return [("", f"expected a list of output names (identifiers), got {value!r}")]
    if len(set(value)) != len(value):
        return [("", "output names must be unique")]
    return []


@op("split", family="tensor", params={
    "sizes": p_int_list("size of each piece along dim", min=1),
    "dim": _axis("dimension to split"),
    "names": Param("custom", "names of the outputs (default out0, out1, ...)", None,
                   schema={"type": "array", "items": {"type": "string"}}, check=names_check),
}, outputs=_split_outputs, example={"in": "qkv", "sizes": [64, 64, 64], "names": ["q", "k", "v"]})
def split(ctx: InferCtx) -> dict[str, TensorType]:
    """Cut ``x`` along ``dim`` into pieces of the given sizes; each piece is a named output (``node.name``)."""
    x, sizes = ctx.x, ctx.params["sizes"]
    axis = norm_axis(ctx, ctx.params["dim"], x.rank)
    names = _split_outputs(ctx.params)
    if len(names) != len(sizes):
        ctx.fail(f"{len(names)} names for {len(sizes)} pieces", "give one name per size", "names")
    ctx.need_dim(x.shape[axis], sum(sizes), f"sum of sizes must equal dim {axis}", "sizes")
    out = {}
    for name, size in zip(names, sizes):
        shape = list(x.shape)
        shape[axis] = size
        out[name] = TensorType(tuple(shape), x.dtype)
    return out


@op("reshape", family="tensor", params={"shape": SHAPE_PARAM},
    example={"in": "x", "shape": [0, 0, 8, -1]})
def reshape(ctx: InferCtx) -> TensorType:
    """View ``x`` with a new shape; ``0`` keeps the input dim, one ``-1`` is inferred."""
    x, target = ctx.x, list(ctx.params["shape"])
    for i, d in enumerate(target):
        if d == 0:
            if i >= x.rank:
                ctx.fail(f"0 at position {i} copies an input dim, but the input has rank {x.rank}", None, "shape")
            target[i] = x.shape[i]
    known = [d for d in target if d != -1]
    total_in, total_known = dim_prod(x.shape), dim_prod(known)
    if -1 in target:
        if isinstance(total_in, int) and isinstance(total_known, int) and (total_known == 0 or total_in % total_known):
            ctx.fail(f"cannot reshape {format_shape(x.shape)} ({total_in} elements) to {format_shape(ctx.params['shape'])}",
                     "the known dims must divide the element count", "shape")
        target[target.index(-1)] = dim_floordiv(total_in, total_known)  # exact when the known dims divide out
    if -1 not in ctx.params["shape"] and isinstance(total_in, int) and isinstance(total_known, int):
        if total_in != total_known:
            ctx.fail(f"cannot reshape {format_shape(x.shape)} ({total_in} elements) to {format_shape(target)} "
                     f"({total_known})", "element counts must match", "shape")
    elif dims_differ(dim_prod(target), total_in):
        ctx.fail(f"cannot reshape {format_shape(x.shape)} to {format_shape(target)}: the element counts differ "
                 f"({total_in} vs {dim_prod(target)})", "element counts must match", "shape")
    return TensorType(tuple(target), x.dtype)


@op("permute", family="tensor", params={"dims": p_int_list("new order of the dims", min=None)},
    example={"in": "x", "dims": [0, 2, 1, 3]})
def permute(ctx: InferCtx) -> TensorType:
    """Reorder dims: ``out.shape[i] = x.shape[dims[i]]``."""
    x, dims = ctx.x, ctx.params["dims"]
    if sorted(d % x.rank if -x.rank <= d < x.rank else d for d in dims) != list(range(x.rank)):
        ctx.fail(f"dims {dims} is not a permutation of 0..{x.rank - 1} (input {format_shape(x.shape)})", None, "dims")
    return TensorType(tuple(x.shape[d] for d in dims), x.dtype)


@op("transpose", family="tensor", params={"dim0": _axis("first dim", -2), "dim1": _axis("second dim", -1)},
    example={"in": "x", "dim0": 1, "dim1": 2})
def transpose(ctx: InferCtx) -> TensorType:
    """Swap two dims."""
    x = ctx.x
    a, b = norm_axis(ctx, ctx.params["dim0"], x.rank, "dim0"), norm_axis(ctx, ctx.params["dim1"], x.rank, "dim1")
    shape = list(x.shape)
    shape[a], shape[b] = shape[b], shape[a]
    return TensorType(tuple(shape), x.dtype)


@op("flatten", family="tensor", params={"start_dim": _axis("first dim to merge", 1), "end_dim": _axis("last dim to merge", -1)},
    example={"in": "x", "start_dim": 1})
def flatten(ctx: InferCtx) -> TensorType:
    """Merge dims ``start_dim..end_dim`` into one."""
    x = ctx.x
    s = norm_axis(ctx, ctx.params["start_dim"], x.rank, "start_dim")
    e = norm_axis(ctx, ctx.params["end_dim"], x.rank, "end_dim")
    if s > e:
        ctx.fail(f"start_dim {s} is after end_dim {e}", None, "start_dim")
    return TensorType(x.shape[:s] + (dim_prod(x.shape[s:e + 1]),) + x.shape[e + 1:], x.dtype)


@op("slice", family="tensor", params={
    "dim": _axis("dimension to slice"), "start": p_int("first index", 0, min=None),
    "end": p_int("one past the last index (null: to the end)", None, min=None), "step": p_int("stride", 1),
}, example={"in": "x", "dim": 1, "start": 0, "end": 1})
def slice_(ctx: InferCtx) -> TensorType:
    """``x[..., start:end:step, ...]`` along ``dim`` (Python slice semantics)."""
    x = ctx.x
    axis = norm_axis(ctx, ctx.params["dim"], x.rank)
    n = x.shape[axis]
    start, end, step = ctx.params["start"], ctx.params["end"], ctx.params["step"]
    if isinstance(n, int):
        length = len(range(*slice(start, end, step).indices(n)))
        if length == 0:
            ctx.fail(f"slice {start}:{end}:{step} of a dim of size {n} is empty", None, "start")
    elif start >= 0 and end is not None and end >= 0:
        length = len(range(start, end, step))
    else:
        length = _symbolic_slice_length(n, start, end, step)
    shape = list(x.shape)
    shape[axis] = length
    return TensorType(tuple(shape), x.dtype)


def _symbolic_slice_length(n: str, start: int, end: int | None, step: int) -> Dim:
    """Length of ``start:end:step`` over a symbolic dim ``n`` (assuming it is long enough), as a dim expression.

    It stays an arithmetic expression so back ends can evaluate it once ``n`` is known.
    """
    if start < 0 and end is None:
        return len(range(start, 0, step))  # the last -start items, whatever n is
    first: Dim = start if start >= 0 else dim_add(n, start)
    stop: Dim = n if end is None else (end if end >= 0 else dim_add(n, end))
    return dim_floordiv(dim_add(dim_add(stop, dim_mul(first, -1)), step - 1), step)


for _name, _desc in (("softmax", "softmax(x)_i = exp(x_i) / Σ_j exp(x_j)"), ("log_softmax", "log of softmax")):
    def _softmax(ctx: InferCtx) -> TensorType:
        ctx.need_float(ctx.x)
        norm_axis(ctx, ctx.params["dim"], ctx.x.rank)
        return ctx.x
    _softmax.__doc__ = f"{_desc} along ``dim`` (seed 002, attention: softmax over scores)."
    op(_name, family="tensor", params={"dim": _axis("dimension to normalize")}, example={"in": "x", "dim": -1})(_softmax)


@op("identity", family="tensor", example={"in": "x"})
def identity(ctx: InferCtx) -> TensorType:
    """Pass the input through unchanged (a named tap point)."""
    return ctx.x


@op("scale", family="tensor", params={"factor": p_float("multiplier")}, example={"in": "x", "factor": 0.5})
def scale(ctx: InferCtx) -> TensorType:
    """Multiply by a constant factor."""
    ctx.need_float(ctx.x)
    return ctx.x


@op("cast", family="tensor", params={"dtype": p_enum("target dtype", DTYPES)}, example={"in": "x", "dtype": "float32"})
def cast(ctx: InferCtx) -> TensorType:
    """Convert to another dtype."""
    return TensorType(ctx.x.shape, ctx.params["dtype"])


_CONST_PARAMS = {
    "shape": Param("int_list", "shape of the tensor", min=1),
    "dtype": p_enum("dtype", DTYPES, "float32"),
}


@op("constant", family="tensor", inputs=(), params={**_CONST_PARAMS, "value": p_float("fill value", 0.0)},
    example={"shape": [1, 16], "value": 0.0})
def constant(ctx: InferCtx) -> TensorType:
    """A fixed tensor filled with ``value`` (no gradient)."""
    return TensorType(tuple(ctx.params["shape"]), ctx.params["dtype"])


@op("parameter", family="tensor", inputs=(), params=_CONST_PARAMS,
    count=lambda ctx: dim_prod(ctx.params["shape"]), example={"shape": [1, 1, 768], "init": "zeros"})
def parameter(ctx: InferCtx) -> TensorType:
    """A learnable tensor (e.g. a ViT class token); initialized normal(0, 0.02) unless the node's ``init`` says otherwise."""
    if not is_float(ctx.params["dtype"]):
        ctx.fail("a learnable parameter must be floating point", None, "dtype")
    return TensorType(tuple(ctx.params["shape"]), ctx.params["dtype"])
