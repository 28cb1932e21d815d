"""Torch implementation of the selective state-space block (nngraph/ops/ssm.py).

``mamba`` -- :class:`Mamba` (seed 000, "State Space Models (SSMs)": x_t = A x_{t-1} + B u_t,
y_t = C x_t + D u_t; seed 002, "Trade-Offs and Mamba": the transition is input-dependent,
"the selection mechanism adapts the model's memory to the current input"). With
d_inner = expand·D, N = d_state, r = dt_rank:

    [u, z] = in_proj(x);  u = silu(causal depthwise conv1d(u))
    [δ, B, C] = x_proj(u);  Δ = softplus(dt_proj(δ));  A = -exp(A_log)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t B_t) u_t   (per channel: h [d_inner, N])
    y_t = C_t · h_t + D ⊙ u_t;  out = out_proj(y ⊙ silu(z))

The recurrence h_t = a_t ⊙ h_{t-1} + b_t (a_t = exp(Δ_t A), b_t = Δ_t B_t u_t) is evaluated by

* ``scan: sequential`` -- :func:`selective_scan_sequential`, one step per position (the reference);
* ``scan: chunked`` -- :func:`selective_scan_chunked`: the sequence is cut into chunks of
  ``chunk_size`` (default 64); inside a chunk all prefixes are combined in log2(chunk) parallel
  steps of the associative operator (a₂, b₂)∘(a₁, b₁) = (a₂a₁, a₂b₁ + b₂) (Hillis-Steele), and
  the state is carried from one chunk to the next. Only products of decays in (0, 1] appear, so
  it is as stable as the sequential scan; both are plain autograd, so gradients agree too.

State (mamba_ssm's ``Mamba``): ``in_proj.weight [2·d_inner, D]`` (+ bias), ``conv1d.weight
[d_inner, 1, d_conv]``, ``conv1d.bias``, ``x_proj.weight [r + 2N, d_inner]``, ``dt_proj.weight
[d_inner, r]``, ``dt_proj.bias``, ``A_log [d_inner, N]``, ``D [d_inner]``, ``out_proj.weight``
(+ bias). Init as mamba_ssm: A_log = log(1..N) per channel (S4D-real), D = 1, dt_proj.weight
U(±r^-1/2), dt_proj.bias = softplus⁻¹(Δ₀) with Δ₀ log-uniform in [0.001, 0.1]; the linears and
the conv keep torch.nn's defaults.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Emit, NodeCtx, torch_op


def _discretize(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of h_t = a_t ⊙ h_{t-1} + b_t: a = exp(Δ A), b = Δ B u; u, Δ [b, T, d_in], A [d_in, N], B [b, T, N]."""
    a = torch.exp(delta.unsqueeze(-1) * A)  # [b, T, d_in, N]
    b = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # [b, T, d_in, N]
    return a, b


def selective_scan_sequential(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                              C: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """y_t = C_t · h_t + D ⊙ u_t with h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t, one position at a time."""
    a, b = _discretize(u, delta, A, B)
    h = torch.zeros_like(b[:, 0])
    ys = []
    for t in range(u.shape[1]):
        h = a[:, t] * h + b[:, t]
        ys.append((h * C[:, t].unsqueeze(1)).sum(-1))
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(u.shape)
    return y + u * D


def _prefix_scan(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan of (a, b) over dim 1 (Hillis-Steele): returns (Π_{s≤t} a_s, h_t from h_{-1} = 0)."""
    length = a.shape[1]
    step = 1
    while step < length:
        a_prev = F.pad(a[:, :-step], (0, 0, 0, 0, step, 0), value=1.0)
        b_prev = F.pad(b[:, :-step], (0, 0, 0, 0, step, 0), value=0.0)
        b = a * b_prev + b
        a = a * a_prev
        step *= 2
    return a, b


def selective_scan_chunked(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, D: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
    """The same recurrence as :func:`selective_scan_sequential`, parallel within chunks, state carried between them."""
    a, b = _discretize(u, delta, A, B)
    h = torch.zeros_like(b[:, 0])
    ys = []
    for start in range(0, u.shape[1], chunk_size):
        ca, cb = _prefix_scan(a[:, start:start + chunk_size], b[:, start:start + chunk_size])
        hs = ca * h.unsqueeze(1) + cb  # [b, L, d_in, N]
        h = hs[:, -1]
        ys.append((hs * C[:, start:start + chunk_size].unsqueeze(2)).sum(-1))
    y = torch.cat(ys, dim=1) if ys else u.new_zeros(u.shape)
    return y + u * D


class Mamba(nn.Module):
    """Selective SSM block (mamba_ssm layout); ``forward(x [B, T, D]) -> [B, T, D]``."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | None = None,
                 conv_bias: bool = True, bias: bool = False, scan: str = "sequential", chunk_size: int | None = None,
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        di = expand * d_model
        r = dt_rank or math.ceil(d_model / 16)
        self.d_inner, self.d_state, self.dt_rank = di, d_state, r
        self.scan, self.chunk_size = scan, chunk_size or 64
        self.in_proj = nn.Linear(d_model, 2 * di, bias=bias)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(di, r + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(r, di, bias=True)
        self.A_log = nn.Parameter(torch.empty(di, d_state))
        self.D = nn.Parameter(torch.empty(di))
        self.out_proj = nn.Linear(di, d_model, bias=bias)
        if not self.D.is_meta:  # meta tensors (shape discovery at compile time) have no values to fill
            self._init_ssm(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float, dt_init_floor: float) -> None:
        di, n, r = self.d_inner, self.d_state, self.dt_rank
        self.A_log.copy_(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1))
        self.D.fill_(1.0)
        std = r ** -0.5
        self.dt_proj.weight.uniform_(-std, std)
        dt = torch.exp(torch.rand(di) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)

    def ssm_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(u, z, Δ, A, B, C) for x [B, T, D]: the projections, conv and discretization inputs."""
        t = x.shape[1]
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv1d(u.transpose(1, 2))[..., :t].transpose(1, 2))
        dbc = self.x_proj(u)
        delta, B, C = dbc.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(delta))
        return u, z, delta, -torch.exp(self.A_log.float()), B, C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, z, delta, A, B, C = self.ssm_inputs(x)
        if self.scan == "chunked":
            y = selective_scan_chunked(u, delta, A, B, C, self.D, self.chunk_size)
        else:
            y = selective_scan_sequential(u, delta, A, B, C, self.D)
        return self.out_proj(y * F.silu(z))

    def extra_repr(self) -> str:
        return f"d_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}, scan={self.scan}"


def _mamba_module(ctx: NodeCtx) -> Mamba:
    p = ctx.params
    return Mamba(ctx.in_features, p["d_state"], p["d_conv"], p["expand"], p["dt_rank"], p["conv_bias"], p["bias"],
                 p["scan"], p["chunk_size"])


@torch_op("mamba", module=_mamba_module)
def mamba(ctx: NodeCtx, e: Emit) -> str:
    """``self.mixer(x)``."""
    return f"{e.self}({e.x})"
