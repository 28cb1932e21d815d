"""Reductions and scans over given dims: reduce (mean/sum/max/min/prod/logsumexp), argmax/argmin, cumsum, normalize."""

from __future__ import annotations

from ..registry import InferCtx, Param, op, p_bool, p_enum, p_float, p_int
from ..types import TensorType, is_float
from ._shapes import norm_axis

#: reduce modes: name -> formula over the reduced elements
REDUCE_MODES: dict[str, str] = {
    "mean": "(1/n)·Σ x", "sum": "Σ x", "max": "max x", "min": "min x", "prod": "Π x",
    "logsumexp": "log Σ e^x (computed stably)",
}
#: modes defined for floating-point inputs only
FLOAT_MODES = ("mean", "logsumexp")


def _dims(ctx: InferCtx, x: TensorType) -> set[int]:
    """The ``dim`` parameter (one dim or a list) as non-negative axes, each once."""
    dims = ctx.params["dim"] if isinstance(ctx.params["dim"], list) else [ctx.params["dim"]]
    axes = [norm_axis(ctx, d, x.rank) for d in dims]
    if len(set(axes)) != len(axes):
        ctx.fail(f"dim {ctx.params['dim']} names a dim twice", None, "dim")
    return set(axes)


def reduced(x: TensorType, axes: set[int], keepdim: bool, dtype: str) -> TensorType:
    """``x`` with ``axes`` removed (kept as 1 with ``keepdim``), of ``dtype``."""
    if keepdim:
        return TensorType(tuple(1 if i in axes else d for i, d in enumerate(x.shape)), dtype)
    return TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), dtype)


@op("reduce", family="reduce", params={
    "mode": p_enum("reduction: " + ", ".join(f"{k} = {v}" for k, v in REDUCE_MODES.items()), tuple(REDUCE_MODES), "mean"),
    "dim": Param("ints", "dim or dims to reduce", -1, min=None),
    "keepdim": p_bool("keep reduced dims with size 1", False),
}, example={"in": "x", "mode": "mean", "dim": 1})
def reduce(ctx: InferCtx) -> TensorType:
    """Reduce over one or more dims with mean, sum, max, min, prod or logsumexp; the dtype is kept."""
    x = ctx.x
    if ctx.params["mode"] in FLOAT_MODES:
        ctx.need_float(x)
    return reduced(x, _dims(ctx, x), ctx.params["keepdim"], x.dtype)


def _arg(ctx: InferCtx) -> TensorType:
    x = ctx.x
    if x.dtype == "bool":
        ctx.fail("input must be numeric, got bool", "cast it first")
    return reduced(x, {norm_axis(ctx, ctx.params["dim"], x.rank)}, ctx.params["keepdim"], "int64")


for _name, _what in (("argmax", "largest"), ("argmin", "smallest")):
    op(_name, family="reduce", params={
        "dim": p_int("dim to search", -1, min=None), "keepdim": p_bool("keep the dim with size 1", False),
    }, example={"in": "logits", "dim": -1})(_arg).doc = (
        f"Index (int64) of the {_what} element along ``dim`` (the first one on ties).")


@op("cumsum", family="reduce", params={"dim": p_int("dim to scan", -1, min=None)}, example={"in": "mask", "dim": 1})
def cumsum(ctx: InferCtx) -> TensorType:
    """Running sum along ``dim``: yᵢ = Σ_{j≤i} xⱼ; float inputs keep their dtype, integer and bool ones give int64
    (e.g. RoBERTa's positions: the cumsum of the non-pad mask)."""
    x = ctx.x
    norm_axis(ctx, ctx.params["dim"], x.rank)
    return TensorType(x.shape, x.dtype if is_float(x.dtype) else "int64")


@op("normalize", family="reduce", params={
    "dim": p_int("dim to normalize", -1, min=None),
    "eps": p_float("lower bound of the norm", 1e-12, min=0.0),
}, example={"in": "embedding", "dim": -1})
def normalize(ctx: InferCtx) -> TensorType:
    """L2 normalization along ``dim``: y = x / max(‖x‖₂, eps)."""
    ctx.need_float(ctx.x)
    norm_axis(ctx, ctx.params["dim"], ctx.x.rank)
    return ctx.x
