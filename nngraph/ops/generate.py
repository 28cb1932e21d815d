"""Generators: arange, full/zeros/ones and meshgrid, computed in the graph (no learnable state).

Sizes may be symbolic dims of the graph's inputs (``end: seq``, ``shape: [seq, seq]``): the tensor is then
computed at run time from the input's size, so Swin's relative-position index and shift mask, or a RoBERTa
position range, live inside the spec. With static sizes the export holds them as constants.
"""

from __future__ import annotations

from typing import Any

from .. import symdim
from ..registry import InferCtx, Param, op, p_enum, p_float
from ..types import DTYPES, Dim, TensorType, dim_add, dim_floordiv, dim_mul
from .tensor import names_check


def _sizes_check(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        return [("", f"expected a non-empty list of sizes, got {value!r}")]
    for i, d in enumerate(value):
        if isinstance(d, bool) or not (isinstance(d, int) and d >= 1 or isinstance(d, str) and d.isidentifier()):
            return [(str(i), f"sizes are integers >= 1 or names of symbolic dims, got {d!r}")]
    return []


_DIM_SCHEMA = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
SIZES_PARAM = Param("custom", "sizes: integers or symbolic dim names of the graph's inputs (e.g. [seq, seq])", None,
                    schema={"type": "array", "items": _DIM_SCHEMA}, check=_sizes_check)


def _expr_check(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not symdim.is_expression(value)):
        return [("", f"expected an integer or an expression of symbolic dims (seq, seq + 1, seq // 2), got {value!r}")]
    return []


def p_dim_expr(doc: str, default: Any = None) -> Param:
    """An integer or an expression of the graph's symbolic dims (``seq + 1``, ``(seq - 1) * 2``; vars via ``${}``)."""
    return Param("custom", doc, default, schema=_DIM_SCHEMA, check=_expr_check)


@op("arange", family="generate", inputs=(), params={
    "start": p_dim_expr("first value: an integer or an expression of symbolic dims", 0),
    "end": p_dim_expr("end (excluded): an integer or an expression of symbolic dims, e.g. seq or seq * 2 - 1"),
    "step": p_dim_expr("increment: an integer (negative only with integer start and end) or a positive expression", 1),
    "dtype": p_enum("dtype", DTYPES, "int64"),
}, example={"end": "seq"})
def arange(ctx: InferCtx) -> TensorType:
    """The 1-D range start, start+step, ... < end; its length ⌈(end − start)/step⌉ = (end − start + step − 1) // step."""
    start, end, step = (symdim.canonical(ctx.params[k]) for k in ("start", "end", "step"))
    if step == 0:
        ctx.fail("step must not be 0", None, "step")
    if all(isinstance(v, int) for v in (start, end, step)):
        length: Dim = len(range(start, end, step))
    elif isinstance(step, int) and step < 0:
        return ctx.fail("a negative step needs an integer start and end", None, "step")
    elif symdim.sign(symdim.parse(step)) != 1:
        return ctx.fail(f"step {step} must be provably positive", "declare the symbol's lower bound", "step")
    else:
        length = dim_floordiv(dim_add(dim_add(end, step), dim_add(-1, dim_mul(start, -1))), step)
    if isinstance(length, int) and length <= 0:
        ctx.fail(f"range({start}, {end}, {step}) is empty", None, "end")
    ctx.meta["range"] = (start, end, step)  # canonical: the back ends evaluate these
    return TensorType((length,), ctx.params["dtype"])


#: fill ops: name -> fixed fill value (None: the ``value`` parameter)
FILLS: dict[str, float | None] = {"full": None, "zeros": 0.0, "ones": 1.0}


def _fill(ctx: InferCtx) -> TensorType:
    like, shape = ctx.inputs.get("like"), ctx.params["shape"]
    if (like is None) == (shape is None):
        ctx.fail("give the shape either as 'shape' or as the input 'like', exactly one",
                 "e.g. shape: [seq, seq], or in: {like: x}", "shape")
    dtype = ctx.params["dtype"] or (like.dtype if like is not None else "float32")
    return TensorType(like.shape if like is not None else tuple(shape), dtype)


for _name, _value in FILLS.items():
    _params = {"shape": SIZES_PARAM, "dtype": p_enum("dtype (default: like's, else float32)", DTYPES, None)}
    if _value is None:
        _params["value"] = p_float("fill value")
    op(_name, family="generate", inputs=("like?",), params=_params,
       example={"shape": ["seq", "seq"], **({"value": -100.0} if _value is None else {})})(_fill).doc = (
        f"A tensor filled with {'value' if _value is None else _value}, shaped by ``shape`` (sizes or symbolic dims) "
        "or like the input ``like``.")


def _meshgrid_outputs(params: dict) -> tuple[str, ...]:
    names = params.get("names")
    return tuple(str(n) for n in names) if isinstance(names, list) and names else ("out0",)


@op("meshgrid", family="generate", inputs=("*xs",), params={
    "indexing": p_enum("ij: out dims follow the inputs; xy: the first two swap (numpy's default)", ("ij", "xy"), "ij"),
    "names": Param("custom", "one output name per input", schema={"type": "array", "items": {"type": "string"}},
                   check=names_check),
}, outputs=_meshgrid_outputs, example={"in": ["rows", "cols"], "names": ["r", "c"]})
def meshgrid(ctx: InferCtx) -> dict[str, TensorType]:
    """Coordinate grids of 1-D inputs: output k holds input k's value along its own dim, broadcast over the rest."""
    types, names = ctx.variadic, _meshgrid_outputs(ctx.params)
    for t in types:
        ctx.need_rank(t, 1, "every input")
        if t.dtype != types[0].dtype:
            ctx.fail(f"inputs have different dtypes: {types[0].dtype} and {t.dtype}")
    if len(names) != len(types):
        ctx.fail(f"{len(names)} names for {len(types)} inputs", "give one name per input", "names")
    shape = [t.shape[0] for t in types]
    if ctx.params["indexing"] == "xy" and len(shape) > 1:
        shape[0], shape[1] = shape[1], shape[0]
    return {name: TensorType(tuple(shape), types[0].dtype) for name in names}


