"""Torch implementations of the activations (seed 000, "Activation functions").

Each is one call in the generated forward: ``torch.relu(x)``, ``F.gelu(x)``,
``F.gelu(x, approximate='tanh')``, ``F.silu(x)``, ``torch.tanh(x)``,
``torch.sigmoid(x)``, ``F.elu(x, alpha=1.0)``, ``F.relu6(x)``, ``F.hardswish(x)``, ``F.hardsigmoid(x)``, ``F.mish(x)``,
``F.leaky_relu(x, negative_slope=0.01)``, ``F.softplus(x, beta=1.0)``.
:func:`activation_fn` gives the same functions as callables for modules that
apply an activation inside (mlp, gated_mlp).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
import torch.nn.functional as F

from nngraph.ops.activation import ACTIVATIONS, PRESETS

from ..registry import Emit, NodeCtx, torch_op

#: op -> (the function as written in generated code, the function)
_FUNCS: dict[str, tuple[str, Callable[..., torch.Tensor]]] = {
    "relu": ("torch.relu", torch.relu),
    "gelu": ("F.gelu", F.gelu),
    "silu": ("F.silu", F.silu),
    "tanh": ("torch.tanh", torch.tanh),
    "sigmoid": ("torch.sigmoid", torch.sigmoid),
    "elu": ("F.elu", F.elu),
    "leaky_relu": ("F.leaky_relu", F.leaky_relu),
    "softplus": ("F.softplus", F.softplus),
    "relu6": ("F.relu6", F.relu6),
    "hardswish": ("F.hardswish", F.hardswish),
    "hardsigmoid": ("F.hardsigmoid", F.hardsigmoid),
    "mish": ("F.mish", F.mish),
}


def _kwargs(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The activation's parameters (defaults filled in); gelu's ``approximate`` only when not 'none'."""
    params = params or {}
    out = {k: params.get(k, p.default) for k, p in ACTIVATIONS[name][1].items()}
    if name == "gelu" and out.get("approximate") == "none":
        out.pop("approximate")
    return out


def activation_expr(name: str, x: str, params: dict[str, Any] | None = None) -> str:
    """Source of applying activation ``name`` to the expression ``x``: ``F.gelu(x, approximate='tanh')``."""
    path, _ = _FUNCS[name]
    kwargs = "".join(f", {k}={v!r}" for k, v in _kwargs(name, params).items())
    return f"{path}({x}{kwargs})"


def activation_fn(name: str, params: dict[str, Any] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Activation ``name`` (or a preset such as ``gelu_tanh``) as a callable (for modules such as the mlp)."""
    if name in PRESETS:
        name, params = PRESETS[name]
    _, fn = _FUNCS[name]
    kwargs = _kwargs(name, params)
    return functools.partial(fn, **kwargs) if kwargs else fn


def _emit(ctx: NodeCtx, e: Emit) -> str:
    return activation_expr(ctx.op, e.x, ctx.params)


for _name in _FUNCS:
    torch_op(_name)(_emit)
