"""Generators: arange, full/zeros/ones and meshgrid, computed in the graph (no learnable state).

Sizes may be symbolic dims of the graph's inputs (``end: seq``, ``shape: [seq, seq]``): the tensor is then
computed at run time from the input's size, so Swin's relative-position index and shift mask, or a RoBERTa
position range, live inside the spec. With static sizes the export holds them as constants.
"""

from __future__ import annotations

from typing import Any

from ..registry import InferCtx, Param, op, p_enum, p_float, p_int
from ..types import DTYPES, Dim, TensorType, dim_add, dim_floordiv
from .tensor import names_check


def _dim_check(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, bool) or not (isinstance(value, int) or isinstance(value, str) and value.isidentifier()):
        return [("", f"expected an integer or the name of a symbolic dim, got {value!r}")]
    return []


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


@op("arange", family="generate", inputs=(), params={
    "start": p_int("first value", 0, min=None),
    "end": Param("custom", "end (excluded): an integer or a symbolic dim such as seq", schema=_DIM_SCHEMA,
                 check=_dim_check),
    "step": p_int("increment (negative only with an integer end)", 1, min=None),
    "dtype": p_enum("dtype", DTYPES, "int64"),
}, example={"end": "seq"})
def arange(ctx: InferCtx) -> TensorType:
    """The 1-D range start, start+step, ... < end; its length ⌈(end − start)/step⌉."""
    start, end, step = ctx.params["start"], ctx.params["end"], ctx.params["step"]
    if step == 0:
        ctx.fail("step must not be 0", None, "step")
    if isinstance(end, int):
        length: Dim = len(range(start, end, step))
    elif step < 0:
        return ctx.fail("a negative step needs an integer end", None, "step")
    else:
        length = dim_floordiv(dim_add(end, step - 1 - start), step)
    if isinstance(length, int) and length <= 0:
        ctx.fail(f"range({start}, {end}, {step}) is empty", None, "end")
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


