"""Elementwise math: unary functions, binary arithmetic, comparisons, logic, ``pow``, ``clamp`` and ``where``.

Every op here is elementwise: inputs broadcast NumPy-style and the output has the
broadcast shape. The tables below are the single list of these ops; the torch back end
(``compilers/torch/ops/math.py``) reads the same names.
"""

from __future__ import annotations

from ..registry import InferCtx, op, p_float
from ..types import TensorType, is_float
from ._shapes import broadcast

#: unary float functions: name -> formula
UNARY: dict[str, str] = {
    "exp": "e^x", "log": "ln x", "sqrt": "√x", "rsqrt": "1/√x", "reciprocal": "1/x",
    "sin": "sin x", "cos": "cos x", "erf": "erf x = (2/√π)∫₀ˣ e^{-t²} dt",
}
#: unary functions of any numeric dtype (the output keeps it): name -> formula
UNARY_NUMERIC: dict[str, str] = {"abs": "|x|", "neg": "−x"}
#: binary arithmetic (same dtype in and out): name -> formula
BINARY: dict[str, str] = {"div": "a / b (true division)", "maximum": "max(a, b)", "minimum": "min(a, b)"}
#: comparisons (bool output): name -> formula
COMPARE: dict[str, str] = {"eq": "a = b", "ne": "a ≠ b", "lt": "a < b", "le": "a ≤ b", "gt": "a > b", "ge": "a ≥ b"}
#: binary logic on bool tensors: name -> formula
LOGIC: dict[str, str] = {"logical_and": "a ∧ b", "logical_or": "a ∨ b"}

_HINT = "elementwise ops broadcast their inputs NumPy-style"


def _broadcast_all(ctx: InferCtx, types: list[TensorType], dtype: str) -> TensorType:
    """The broadcast shape of ``types`` with ``dtype``."""
    shape = types[0].shape
    for t in types[1:]:
        shape = broadcast(ctx, TensorType(shape, t.dtype), t)
    return TensorType(shape, dtype)


def _same_dtype(ctx: InferCtx, a: TensorType, b: TensorType) -> None:
    """Both operands share a dtype: torch would promote silently, ONNX refuses."""
    if a.dtype != b.dtype:
        ctx.fail(f"inputs have different dtypes: {a.dtype} and {b.dtype}", "cast one of them with a 'cast' node")


def _need_bool(ctx: InferCtx, t: TensorType, what: str) -> None:
    if t.dtype != "bool":
        ctx.fail(f"{what} must be a bool tensor, got {t.dtype}", "make it with a comparison (eq, lt, ...) or cast it")


def _unary_float(ctx: InferCtx) -> TensorType:
    ctx.need_float(ctx.x)
    return ctx.x


def _unary_numeric(ctx: InferCtx) -> TensorType:
    if ctx.x.dtype == "bool":
        ctx.fail("input must be numeric, got bool", "cast it first")
    return ctx.x


def _binary(ctx: InferCtx) -> TensorType:
    a, b = ctx.inputs["a"], ctx.inputs["b"]
    _same_dtype(ctx, a, b)
    if ctx.op.name == "div":
        ctx.need_float(a, "a")
    return _broadcast_all(ctx, [a, b], a.dtype)


def _compare(ctx: InferCtx) -> TensorType:
    a, b = ctx.inputs["a"], ctx.inputs["b"]
    _same_dtype(ctx, a, b)
    return _broadcast_all(ctx, [a, b], "bool")


def _logic(ctx: InferCtx) -> TensorType:
    a, b = ctx.inputs["a"], ctx.inputs["b"]
    _need_bool(ctx, a, "a")
    _need_bool(ctx, b, "b")
    return _broadcast_all(ctx, [a, b], "bool")


def _register(table: dict[str, str], rule, inputs: tuple[str, ...], what: str) -> None:
    example = {"in": "x"} if inputs == ("x",) else {"in": list(inputs)}
    for name, formula in table.items():
        op(name, family="math", inputs=inputs, example=example, shape_hint=_HINT)(rule).doc = f"{what}: {formula}."


_register(UNARY, _unary_float, ("x",), "Elementwise float function")
_register(UNARY_NUMERIC, _unary_numeric, ("x",), "Elementwise function, keeps the dtype")
_register(BINARY, _binary, ("a", "b"), "Elementwise binary arithmetic with broadcasting")
_register(COMPARE, _compare, ("a", "b"), "Elementwise comparison with broadcasting, bool output")
_register(LOGIC, _logic, ("a", "b"), "Elementwise logic on bool tensors with broadcasting")


@op("logical_not", family="math", example={"in": "mask"})
def logical_not(ctx: InferCtx) -> TensorType:
    """Elementwise logic on a bool tensor: ¬x."""
    _need_bool(ctx, ctx.x, "input")
    return ctx.x


@op("pow", family="math", inputs=("x", "exponent?"), params={
    "exponent": p_float("constant exponent (instead of an exponent input)", None),
}, example={"in": "x", "exponent": 2.0}, shape_hint=_HINT)
def pow_(ctx: InferCtx) -> TensorType:
    """Elementwise power xᵖ: p is the constant ``exponent`` or the tensor input ``exponent`` (broadcast)."""
    x, tensor_exp, const_exp = ctx.x, ctx.inputs.get("exponent"), ctx.params["exponent"]
    ctx.need_float(x)
    if (tensor_exp is None) == (const_exp is None):
        ctx.fail("give the exponent either as the parameter 'exponent' or as the input 'exponent', exactly one",
                 "e.g. {op: pow, in: x, exponent: 2.0} or {op: pow, in: {x: x, exponent: p}}", "exponent")
    if tensor_exp is None:
        return x
    _same_dtype(ctx, x, tensor_exp)
    return _broadcast_all(ctx, [x, tensor_exp], x.dtype)


@op("clamp", family="math", params={
    "min": p_float("lower bound (null: none)", None), "max": p_float("upper bound (null: none)", None),
}, example={"in": "x", "min": 0.0, "max": 6.0})
def clamp(ctx: InferCtx) -> TensorType:
    """Elementwise clamp: min(max(x, lo), hi); either bound may be left out, not both."""
    lo, hi = ctx.params["min"], ctx.params["max"]
    if lo is None and hi is None:
        ctx.fail("clamp needs 'min', 'max' or both", None, "min")
    if lo is not None and hi is not None and lo > hi:
        ctx.fail(f"min {lo} is above max {hi}", None, "min")
    if ctx.x.dtype == "bool":
        ctx.fail("input must be numeric, got bool", "cast it first")
    for name in ("min", "max"):
        bound = ctx.params[name]
        if bound is not None and not is_float(ctx.x.dtype) and not float(bound).is_integer():
            ctx.fail(f"{name} {bound} is fractional for an {ctx.x.dtype} input", "use an integer bound or cast", name)
    return ctx.x


@op("where", family="math", inputs=("cond", "a", "b"), example={"in": ["mask", "x", "fill"]}, shape_hint=_HINT)
def where(ctx: InferCtx) -> TensorType:
    """Elementwise select: a where cond is true, else b; the three inputs broadcast."""
    cond, a, b = ctx.inputs["cond"], ctx.inputs["a"], ctx.inputs["b"]
    _need_bool(ctx, cond, "cond")
    _same_dtype(ctx, a, b)
    return _broadcast_all(ctx, [cond, a, b], a.dtype)
