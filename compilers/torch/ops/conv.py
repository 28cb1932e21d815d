"""Torch implementations of the convolution family (nngraph/ops/conv.py).

* ``conv1d`` / ``conv2d`` -- ``nn.Conv1d`` / ``nn.Conv2d`` (seed 002, "The
  Convolution Operation"); state ``<node>.weight [out, C_in/groups, *k]``,
  ``<node>.bias [out]``.
* ``conv_transpose2d`` -- ``nn.ConvTranspose2d``; ``weight [C_in, out/groups, kh, kw]``.
* ``upsample`` -- ``F.interpolate`` (no state).
* ``patch_embed`` -- :class:`PatchEmbed` (seed 002, "Vision Transformers"): a
  conv with kernel = stride = patch, flattened to tokens, a learnable [CLS]
  token prepended; state ``<node>.weight [D, C, ph, pw]``, ``<node>.bias [D]``,
  ``<node>.cls [1, 1, D]`` as the nngraph docstring lays out.

Default init: convolutions feeding a ReLU (directly or through a batch/group
norm, the ResNet pattern) get He init -- ``kaiming_normal`` with
``mode=fan_out``, ``nonlinearity=relu`` as torchvision's ResNet (seed 000, He
initialization); others Xavier/Glorot uniform; biases 0. The patch projection is
Xavier uniform and the [CLS] token normal(0, 0.02) (ViT practice).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Emit, NodeCtx, torch_op

_HE_BEFORE = {"relu", "leaky_relu", "batch_norm", "group_norm"}


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, list) else (value,) * n


def _padding(value: Any, n: int) -> Any:
    if value == "valid":
        return 0
    return value if value == "same" else _tuple(value, n)


def _conv_init(ctx: NodeCtx) -> dict[str, Any]:
    readers = {op for op, _ in ctx.consumers}
    if readers and readers <= _HE_BEFORE:
        weight = ("kaiming_normal", {"mode": "fan_out", "nonlinearity": "relu"})
    else:
        weight = ("xavier_uniform", {})
    return {"weight": weight, "bias": "zeros"}


def _conv_module(n: int):
    cls = {1: nn.Conv1d, 2: nn.Conv2d}[n]

    def build(ctx: NodeCtx) -> nn.Module:
        p = ctx.params
        return cls(ctx.x.shape[1], p["out"], _tuple(p["kernel"], n), stride=_tuple(p["stride"], n),
                   padding=_padding(p["padding"], n), dilation=_tuple(p["dilation"], n), groups=p["groups"],
                   bias=p["bias"])

    return build


def _module_call(ctx: NodeCtx, e: Emit) -> str:
    return f"{e.self}({e.x})"


torch_op("conv1d", module=_conv_module(1), init=_conv_init)(_module_call)
torch_op("conv2d", module=_conv_module(2), init=_conv_init)(_module_call)


def _conv_t(ctx: NodeCtx) -> nn.Module:
    p = ctx.params
    return nn.ConvTranspose2d(ctx.x.shape[1], p["out"], _tuple(p["kernel"], 2), stride=_tuple(p["stride"], 2),
                              padding=_tuple(p["padding"], 2), output_padding=_tuple(p["output_padding"], 2),
                              groups=p["groups"], bias=p["bias"], dilation=_tuple(p["dilation"], 2))


torch_op("conv_transpose2d", module=_conv_t, init=_conv_init)(_module_call)


@torch_op("upsample")
def upsample(ctx: NodeCtx, e: Emit) -> str:
    """``F.interpolate(x, scale_factor=..., mode=...)`` (or ``size=...``)."""
    p = ctx.params
    if p["size"] is not None:
        how = f"size={_tuple(p['size'], ctx.x.rank - 2)!r}"
    else:
        scale = p["scale_factor"]
        how = f"scale_factor={tuple(scale) if isinstance(scale, list) else scale!r}"
    corners = f", align_corners={p['align_corners']!r}" if p["mode"] == "bilinear" else ""
    return f"F.interpolate({e.x}, {how}, mode={p['mode']!r}{corners})"


class PatchEmbed(nn.Module):
    """ViT patch embedding: conv(kernel = stride = patch) -> [batch, N, D], optional [CLS] token first."""

    def __init__(self, channels: int, dim: int, patch: tuple[int, int], bias: bool = True, cls_token: bool = False):
        super().__init__()
        self.patch = patch
        self.weight = nn.Parameter(torch.empty(dim, channels, *patch))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = F.conv2d(x, self.weight, self.bias, stride=self.patch).flatten(2).transpose(1, 2)
        if self.cls is not None:
            tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        return tokens

    def extra_repr(self) -> str:
        return f"patch={self.patch}"


@torch_op("patch_embed", init={"weight": "xavier_uniform", "bias": "zeros", "cls": ("normal", {"std": 0.02})},
          module=lambda ctx: PatchEmbed(ctx.x.shape[1], ctx.params["dim"], _tuple(ctx.params["patch"], 2),
                                        ctx.params["bias"], ctx.params["cls_token"]))
def patch_embed(ctx: NodeCtx, e: Emit) -> str:
    """``self.patch(x)``."""
    return f"{e.self}({e.x})"
