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
  ``chunk_size`` (default 64) that are scanned in parallel (all chunks advance together, one
  position per step), then the state is carried from chunk to chunk and added back with each
  position's accumulated decay: chunk_size + T/chunk_size sequential steps instead of T. Only
  products of decays in (0, 1] appear, so it is as stable as the sequential scan; both are plain
  autograd, so gradients agree too. It pays off where the per-step work is small (long sequences,
  small batch·d_inner, accelerators); on a CPU with large batch·d_inner the whole-tensor passes
  cost more memory traffic than the sequential loop (bench/ssm_scan.py).

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
    # unbind, not a[:, t]: the backward of one slice per step would build a full-size gradient per step
    for a_t, b_t, c_t in zip(a.unbind(1), b.unbind(1), C.unbind(1)):
        h = a_t * h + b_t
        ys.append((h * c_t.unsqueeze(1)).sum(-1))
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(u.shape)
    return y + u * D


def _chunks(x: torch.Tensor, size: int, fill: float) -> torch.Tensor:
    """[b, T, ...] -> [b, ceil(T/size), size, ...], the tail padded with ``fill``."""
    t = x.shape[1]
    n = -(-t // size)
    if n * size != t:
        x = F.pad(x, (0, 0) * (x.dim() - 2) + (0, n * size - t), value=fill)
    return x.view(x.shape[0], n, size, *x.shape[2:])


def selective_scan_chunked(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, D: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
    """The recurrence of :func:`selective_scan_sequential` in chunks of ``chunk_size`` positions.

    1. every chunk is scanned from a zero state, all chunks at once: ``chunk_size`` steps on
       [b, chunks, d_in, N] tensors (h_l = a_l ⊙ h_{l-1} + b_l) instead of T steps on [b, d_in, N];
    2. the chunks' true incoming states are carried across chunks: H_{c+1} = P_c ⊙ H_c + h_c(end), where
       P = exp(cumsum(Δ A)) is the decay accumulated inside a chunk (a product of factors in (0, 1],
       computed in log space: it can underflow to 0, which is its limit, but never overflow);
    3. h_t = h_t(local) + P_t ⊙ H_chunk(t), y_t = C_t · h_t + D ⊙ u_t, as whole-tensor operations.

    T/chunk_size + chunk_size sequential steps instead of T.
    """
    t = u.shape[1]
    dA = delta.unsqueeze(-1) * A  # [b, T, d_in, N]
    bu = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
    dA, bu, Cc = _chunks(dA, chunk_size, 0.0), _chunks(bu, chunk_size, 0.0), _chunks(C, chunk_size, 0.0)
    a = torch.exp(dA)
    decay = torch.exp(torch.cumsum(dA, dim=2))  # [b, chunks, L, d_in, N]
    h = torch.zeros_like(bu[:, :, 0])
    local = []
    for a_l, b_l in zip(a.unbind(2), bu.unbind(2)):
        h = torch.addcmul(b_l, a_l, h)
        local.append(h)
    carry = torch.zeros_like(h[:, 0])
    incoming = []
    for decay_c, h_c in zip(decay[:, :, -1].unbind(1), h.unbind(1)):
        incoming.append(carry)
        carry = torch.addcmul(h_c, decay_c, carry)
    hs = torch.addcmul(torch.stack(local, dim=2), decay, torch.stack(incoming, dim=1).unsqueeze(2))
    y = (hs * Cc.unsqueeze(3)).sum(-1).reshape(u.shape[0], -1, u.shape[2])[:, :t]
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
