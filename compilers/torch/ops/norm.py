"""Torch implementations of normalization (nngraph/ops/norm.py).

* ``batch_norm`` -- ``nn.BatchNorm1d`` ([batch, C] or [batch, C, L]) or
  ``nn.BatchNorm2d`` ([batch, C, H, W]); state ``weight``, ``bias``, buffers
  ``running_mean``, ``running_var``, ``num_batches_tracked`` (seed 002,
  "Pooling, Hierarchical Representation, and Normalization").
* ``layer_norm`` -- ``nn.LayerNorm`` (seed 002, "Encoder Architecture").
* ``rms_norm`` -- ``nn.RMSNorm``: y = γ·x/√(mean(x²) + ε); with ``offset`` both
  norms scale by (offset + γ) (:class:`OffsetLayerNorm`, :class:`OffsetRMSNorm`).
* ``group_norm`` -- ``nn.GroupNorm``.
* ``dyt`` -- :class:`DyT`: y = γ·tanh(αx) + β (seed 000, "Practical
  Implementation"); state ``alpha [1]`` (alpha_init), ``weight [C]`` (ones),
  ``bias [C]`` (zeros).

* ``layer_scale`` -- y = γ ⊙ x, γ [C] a bare parameter initialized to ``init_value``.

Scales start at 1 and shifts at 0 (PyTorch's defaults); every module is called
as ``self.<node>(x)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Emit, NodeCtx, torch_op

_AFFINE_INIT = {"weight": "ones", "bias": "zeros"}


def _shape(ctx: NodeCtx) -> tuple[int, ...]:
    shape = ctx.params["shape"]
    if shape is None:
        return (ctx.in_features,)
    return tuple(shape) if isinstance(shape, list) else (shape,)


def _call(ctx: NodeCtx, e: Emit) -> str:
    return f"{e.self}({e.x})"


def _batch_norm(ctx: NodeCtx) -> nn.Module:
    cls = nn.BatchNorm2d if ctx.x.rank == 4 else nn.BatchNorm1d
    p = ctx.params
    return cls(ctx.x.shape[1], eps=p["eps"], momentum=p["momentum"], affine=p["affine"],
               track_running_stats=p["track_running_stats"])


class DyT(nn.Module):
    """Dynamic Tanh: ``weight * tanh(alpha * x) + bias`` over the last dim."""

    def __init__(self, channels: int, alpha_init: float = 0.5):
        super().__init__()
        self.alpha_init = alpha_init
        self.alpha = nn.Parameter(torch.full((1,), float(alpha_init)))
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * torch.tanh(self.alpha * x) + self.bias

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, alpha_init={self.alpha_init}"


torch_op("batch_norm", module=_batch_norm, init=_AFFINE_INIT)(_call)
class _Offset:
    """A norm scaling by (offset + γ) (Gemma: offset 1); the state dict holds γ as ``weight``, like Hugging Face's."""

    offset: float

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, offset={self.offset}"


class OffsetLayerNorm(_Offset, nn.LayerNorm):
    """LayerNorm with y = (offset + γ)·(x − μ)/√(σ² + ε) + β."""

    def __init__(self, shape: Any, eps: float, bias: bool, offset: float):
        super().__init__(shape, eps=eps, bias=bias)
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight + self.offset, self.bias, self.eps)


class OffsetRMSNorm(_Offset, nn.RMSNorm):
    """RMSNorm with y = (offset + γ)·x/√(mean(x²) + ε)."""

    def __init__(self, shape: Any, eps: float, offset: float):
        super().__init__(shape, eps=eps)
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight + self.offset, self.eps)


def _layer_norm(ctx: Any) -> nn.Module:
    p = ctx.params
    if p["offset"]:
        return OffsetLayerNorm(_shape(ctx), p["eps"], p["bias"], p["offset"])
    return nn.LayerNorm(_shape(ctx), eps=p["eps"], elementwise_affine=p["elementwise_affine"], bias=p["bias"])


def _rms_norm(ctx: Any) -> nn.Module:
    if ctx.params["offset"]:
        return OffsetRMSNorm(_shape(ctx), ctx.params["eps"], ctx.params["offset"])
    return nn.RMSNorm(_shape(ctx), eps=ctx.params["eps"], elementwise_affine=ctx.params["elementwise_affine"])


def _offset_init(ctx: Any) -> dict[str, Any]:
    """γ starts where (offset + γ) is 1: ones, or zeros with offset 1; a shift β starts at 0."""
    return {"weight": ("constant", {"value": 1.0 - ctx.params["offset"]}), "bias": "zeros"}


torch_op("layer_norm", module=_layer_norm, init=_offset_init)(_call)
torch_op("rms_norm", module=_rms_norm, init=_offset_init)(_call)
torch_op("group_norm", init=_AFFINE_INIT, module=lambda ctx: nn.GroupNorm(
    ctx.params["groups"], ctx.x.shape[1], eps=ctx.params["eps"], affine=ctx.params["affine"]))(_call)
torch_op("dyt", module=lambda ctx: DyT(ctx.in_features, ctx.params["alpha_init"]))(_call)


def _layer_scale(ctx: NodeCtx) -> nn.Parameter:
    return nn.Parameter(torch.empty(ctx.x.shape[ctx.params["dim"]]))


@torch_op("layer_scale", module=_layer_scale, init=lambda ctx: {"": ("constant", {"value": ctx.params["init_value"]})})
def layer_scale(ctx: NodeCtx, e: Emit) -> str:
    """``x * γ`` with γ [C] viewed to broadcast along ``dim`` (trailing 1s after it; none when dim is the last)."""
    dim = ctx.params["dim"] % ctx.x.rank
    trailing = ctx.x.rank - 1 - dim
    return f"{e.x} * {e.self}" + (f".view(-1{', 1' * trailing})" if trailing else "")
