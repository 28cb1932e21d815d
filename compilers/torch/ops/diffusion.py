"""Torch implementations of the diffusion ops (nngraph/ops/diffusion.py).

* ``diffusion_noise`` -- :func:`q_sample`: x_t = √ᾱ_t · x_0 + √(1−ᾱ_t) · ε with the node's
  linear or cosine schedule (seed 000 "Diffusion Models"; seed 002 "Denoising Diffusion
  Probabilistic Models"); no state. The schedules, the ε-prediction loss and the DDPM/DDIM
  samplers are in :mod:`nngraph.compilers.torch.diffusion_sampling`. A step outside 0..steps−1 raises
  ValueError naming it.
* ``timestep_embedding`` -- :func:`sinusoidal` (diffusers' ``get_timestep_embedding``:
  [sin(tω_i), cos(tω_i)], ω_i = max_period^(−i/(dim/2 − freq_shift)); the Transformer's
  sinusoidal encoding applied to the step) and, with ``out``, :class:`TimestepEmbedding`
  ``linear_2(silu(linear_1(·)))`` with diffusers' state names ``linear_1.*``, ``linear_2.*``.
* ``res_block`` -- :class:`ResBlock`, diffusers' ``ResnetBlock2D`` (``default`` = add and
  ``scale_shift`` step conditioning, 1×1 ``conv_shortcut`` when the channels change), same
  state names, so its weights load unchanged.

Default init: torch.nn's (as diffusers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..diffusion_sampling import make_schedule
from ..diffusion_sampling import q_sample as _q_sample
from ..registry import Emit, NodeCtx, torch_op


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: str = "linear", steps: int = 1000,
             beta_start: float = 1e-4, beta_end: float = 0.02, cosine_s: float = 0.008) -> torch.Tensor:
    """The forward noising of the ``diffusion_noise`` node (schedule tensors cached per parameter set)."""
    return _q_sample(x0, t, noise, make_schedule(schedule, steps, beta_start, beta_end, cosine_s))


def sinusoidal(t: torch.Tensor, dim: int, max_period: float = 10000.0, flip_sin_to_cos: bool = False,
               freq_shift: float = 0.0) -> torch.Tensor:
    """[B] steps -> [B, dim] sinusoidal embedding (odd dim zero-padded by one column)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - freq_shift)
    emb = t.float()[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.cos(emb), torch.sin(emb)] if flip_sin_to_cos else [torch.sin(emb), torch.cos(emb)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimestepEmbedding(nn.Module):
    """sinusoidal(t) -> linear_1 -> silu -> linear_2 (diffusers ``Timesteps`` + ``TimestepEmbedding``)."""

    def __init__(self, dim: int, out: int, max_period: float = 10000.0, flip_sin_to_cos: bool = False,
                 freq_shift: float = 0.0):
        super().__init__()
        self.dim, self.max_period, self.flip_sin_to_cos, self.freq_shift = dim, max_period, flip_sin_to_cos, freq_shift
        self.linear_1 = nn.Linear(dim, out)
        self.linear_2 = nn.Linear(out, out)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = sinusoidal(t, self.dim, self.max_period, self.flip_sin_to_cos, self.freq_shift)
        return self.linear_2(F.silu(self.linear_1(emb.to(self.linear_1.weight.dtype))))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period}"


class ResBlock(nn.Module):
    """U-Net residual block with step conditioning (diffusers ``ResnetBlock2D``); ``forward(x, temb=None)``."""

    def __init__(self, channels: int, out: int, temb_dim: int | None = None, groups: int = 32, eps: float = 1e-5,
                 dropout: float = 0.0, temb_mode: str = "add"):
        super().__init__()
        self.temb_mode = temb_mode
        self.norm1 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv1 = nn.Conv2d(channels, out, 3, padding=1)
        self.time_emb_proj = (nn.Linear(temb_dim, 2 * out if temb_mode == "scale_shift" else out)
                              if temb_dim is not None else None)
        self.norm2 = nn.GroupNorm(groups, out, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out, out, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(channels, out, 1) if channels != out else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        cond = None
        if temb is not None and self.time_emb_proj is not None:
            cond = self.time_emb_proj(F.silu(temb))[:, :, None, None]
        if self.temb_mode == "scale_shift":
            if cond is None:
                raise ValueError("res_block with temb_mode scale_shift needs temb")
            scale, shift = cond.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h if cond is None else h + cond)
        h = self.conv2(self.dropout(F.silu(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h

    def extra_repr(self) -> str:
        return f"temb_mode={self.temb_mode}"


@torch_op("diffusion_noise")
def diffusion_noise(ctx: NodeCtx, e: Emit) -> str:
    """``nng.ops.diffusion.q_sample(x0, t, noise, 'linear', 1000, ...)``."""
    p = ctx.params
    args = ", ".join(e.inputs[k] for k in ("x0", "t", "noise"))
    return (f"nng.ops.diffusion.q_sample({args}, {p['schedule']!r}, {p['steps']}, {p['beta_start']!r}, "
            f"{p['beta_end']!r}, {p['cosine_s']!r})")


def _temb_module(ctx: NodeCtx) -> TimestepEmbedding | None:
    p = ctx.params
    if p["out"] is None:
        return None
    return TimestepEmbedding(p["dim"], p["out"], p["max_period"], p["flip_sin_to_cos"], p["freq_shift"])


@torch_op("timestep_embedding", module=_temb_module)
def timestep_embedding(ctx: NodeCtx, e: Emit) -> str:
    """``self.temb(t)``, or ``nng.ops.diffusion.sinusoidal(t, dim, ...)`` without an MLP."""
    p = ctx.params
    if p["out"] is not None:
        return f"{e.self}({e.x})"
    return (f"nng.ops.diffusion.sinusoidal({e.x}, {p['dim']}, {p['max_period']!r}, {p['flip_sin_to_cos']!r}, "
            f"{p['freq_shift']!r})")


def _res_module(ctx: NodeCtx) -> ResBlock:
    p = ctx.params
    c = ctx.inputs["x"].shape[1]
    temb = ctx.inputs.get("temb")
    return ResBlock(c, p["out"] or c, temb.shape[1] if temb is not None else None, p["groups"], p["eps"],
                    p["dropout"], p["temb_mode"])


@torch_op("res_block", module=_res_module)
def res_block(ctx: NodeCtx, e: Emit) -> str:
    """``self.res(x, temb)``."""
    return f"{e.self}({e.inputs['x']}, {e.inputs.get('temb', 'None')})"
