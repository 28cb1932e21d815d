"""Torch implementations of the elementwise math ops (nngraph/ops/math.py).

Each is one call in the generated forward: ``torch.exp(x)``, ``torch.div(a, b)``,
``torch.lt(a, b)``, ``torch.pow(x, 2.0)``, ``torch.clamp(x, min=0.0, max=6.0)``,
``torch.where(mask, a, b)``.
"""

from __future__ import annotations

from nngraph.ops.math import BINARY, COMPARE, LOGIC, UNARY, UNARY_NUMERIC
from nngraph.types import is_float

from ..registry import Emit, NodeCtx, torch_op

def _call(ctx: NodeCtx, e: Emit) -> str:
    """``torch.<op>(inputs...)``."""
    return f"torch.{ctx.op}({', '.join(e.all_inputs)})"


for _table in (UNARY, UNARY_NUMERIC, BINARY, COMPARE, LOGIC):
    for _name in _table:
        torch_op(_name)(_call)
torch_op("logical_not")(_call)
torch_op("where")(_call)


@torch_op("pow")
def pow_(ctx: NodeCtx, e: Emit) -> str:
    """``torch.pow(x, p)``: p the constant exponent or the exponent input."""
    const = ctx.params["exponent"]
    return f"torch.pow({e.x}, {e.inputs['exponent'] if const is None else repr(float(const))})"


@torch_op("clamp")
def clamp(ctx: NodeCtx, e: Emit) -> str:
    """``torch.clamp(x, min=lo, max=hi)`` with the bounds given (ints for an integer input, which keeps its dtype)."""
    cast = float if is_float(ctx.x.dtype) else int
    bounds = "".join(f", {k}={cast(ctx.params[k])!r}" for k in ("min", "max") if ctx.params[k] is not None)
    return f"torch.clamp({e.x}{bounds})"
