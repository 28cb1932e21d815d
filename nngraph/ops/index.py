"""Indexing: gather (take_along_dim), index_select, one_hot, and lookup into a constant table."""

from __future__ import annotations

from typing import Any

from ..registry import InferCtx, Param, op, p_enum, p_int
from ..types import DTYPES, TensorType, dims_differ, format_shape, is_float
from ._shapes import norm_axis


@op("gather", family="index", inputs=("x", "index"), params={"dim": p_int("dim to index", -1, min=None)},
    example={"in": ["scores", "idx"], "dim": -1})
def gather(ctx: InferCtx) -> TensorType:
    """take_along_dim: out[..., i, ...] = x[..., index[..., i, ...], ...] along ``dim``; the output has the index's
    shape (same rank as x; every other dim at most x's)."""
    x, index = ctx.inputs["x"], ctx.inputs["index"]
    ctx.need_int(index, "index")
    axis = norm_axis(ctx, ctx.params["dim"], x.rank)
    if index.rank != x.rank:
        ctx.fail(f"index {format_shape(index.shape)} must have the rank of x {format_shape(x.shape)}",
                 "unsqueeze or expand the index to x's rank")
    for i, (a, b) in enumerate(zip(x.shape, index.shape)):
        if i != axis and isinstance(a, int) and isinstance(b, int) and b > a:
            ctx.fail(f"index dim {i} is {b}, larger than x's {a}")
    return TensorType(index.shape, x.dtype)


@op("index_select", family="index", inputs=("x", "index"), params={"dim": p_int("dim to select along", 0, min=None)},
    example={"in": ["table", "ids"], "dim": 0})
def index_select(ctx: InferCtx) -> TensorType:
    """Pick whole slices along ``dim`` by a 1-D index: out.shape[dim] = len(index)."""
    x, index = ctx.inputs["x"], ctx.inputs["index"]
    ctx.need_int(index, "index")
    ctx.need_rank(index, 1, "index")
    axis = norm_axis(ctx, ctx.params["dim"], x.rank)
    return TensorType(x.shape[:axis] + index.shape + x.shape[axis + 1:], x.dtype)


@op("one_hot", family="index", params={
    "classes": p_int("number of classes (the new last dim)"),
    "dtype": p_enum("output dtype", DTYPES, "float32"),
}, example={"in": "labels", "classes": 10})
def one_hot(ctx: InferCtx) -> TensorType:
    """out[..., c] = 1 if x[...] == c else 0, a new last dim of size ``classes``."""
    ctx.need_int(ctx.x)
    return TensorType(ctx.x.shape + (ctx.params["classes"],), ctx.params["dtype"])


def table_shape(value: Any) -> tuple[int, ...] | None:
    """The shape of a nested list of numbers with equal-length rows, or None if it is ragged or not numbers."""
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return ()
    if not isinstance(value, list) or not value:
        return None
    shapes = {table_shape(v) for v in value}
    if len(shapes) != 1 or None in shapes:
        return None
    return (len(value),) + shapes.pop()


def _table_check(value: Any) -> list[tuple[str, str]]:
    shape = table_shape(value)
    if shape is None or not shape:
        return [("", "expected a non-empty list of numbers, or of equal-length lists of numbers")]
    return []


TABLE_PARAM = Param("custom", "the constant table: a list of numbers, or a list of equal-length rows",
                    schema={"type": "array"}, check=_table_check)


@op("lookup", family="index", params={
    "table": TABLE_PARAM, "dtype": p_enum("dtype of the table", DTYPES, "float32"),
}, example={"in": "ids", "table": [[0.0, 1.0], [1.0, 0.0]]})
def lookup(ctx: InferCtx) -> TensorType:
    """out[...] = table[x[...]]: rows of a constant (non-learnable) table, out.shape = x.shape + table.shape[1:]."""
    ctx.need_int(ctx.x)
    shape = table_shape(ctx.params["table"])
    if not is_float(ctx.params["dtype"]) and any(isinstance(v, float) and not v.is_integer()
                                                 for v in _flat(ctx.params["table"])):
        ctx.fail(f"table has fractional values for dtype {ctx.params['dtype']}", None, "table")
    return TensorType(ctx.x.shape + shape[1:], ctx.params["dtype"])


def _flat(value: Any) -> list:
    return [w for v in value for w in _flat(v)] if isinstance(value, list) else [value]
