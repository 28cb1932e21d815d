"""Activation functions (seed 000, "Activation functions"; seed 002 §CNN nonlinearities).

All are elementwise: the output has the input's shape and dtype.
"""

from __future__ import annotations

from ..registry import InferCtx, Param, op, p_enum, p_float
from ..types import TensorType

#: name -> (formula for the docs, extra parameters)
ACTIVATIONS: dict[str, tuple[str, dict[str, Param]]] = {
    "relu": ("max(0, x)", {}),
    "gelu": ("x·Φ(x) (tanh approximation optional)", {"approximate": p_enum("approximation", ("none", "tanh"), "none")}),
    "silu": ("x·σ(x) (swish)", {}),
    "tanh": ("tanh(x)", {}),
    "sigmoid": ("σ(x) = 1/(1+e^{-x})", {}),
    "elu": ("x if x>0 else α(e^x − 1)", {"alpha": p_float("α", 1.0)}),
    "leaky_relu": ("x if x>0 else slope·x", {"negative_slope": p_float("slope for x<0", 0.01)}),
    "softplus": ("(1/β)·log(1+e^{βx})", {"beta": p_float("β", 1.0, min=0.0)}),
    "relu6": ("min(max(0, x), 6) (MobileNetV2)", {}),
    "hardswish": ("x·relu6(x + 3)/6 (MobileNetV3)", {}),
    "hardsigmoid": ("relu6(x + 3)/6", {}),
    "mish": ("x·tanh(softplus(x))", {}),
}

#: names the FFN ops (mlp, gated_mlp) accept for an activation with fixed parameters: name -> (activation, params)
PRESETS: dict[str, tuple[str, dict]] = {"gelu_tanh": ("gelu", {"approximate": "tanh"})}
#: every activation name an FFN op accepts
FFN_ACTIVATIONS: tuple[str, ...] = tuple(ACTIVATIONS) + tuple(PRESETS)


def _elementwise_float(ctx: InferCtx) -> TensorType:
    ctx.need_float(ctx.x)
    return ctx.x


for _name, (_formula, _params) in ACTIVATIONS.items():
    op(_name, family="activation", params=_params, example={"in": "x"})(_elementwise_float).doc = (
        f"Activation {_name}: {_formula}, elementwise (seed 000, 'Activation functions').")
