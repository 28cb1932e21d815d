"""Torch implementation of the sparse mixture of experts (nngraph/ops/moe.py).

``moe`` -- :class:`MoE` (seed 000, Transformers section, "mixtures-of-experts (Switch
Transformers)": MoE(x) = Σ_e G_e(x)·E_e(x) with G nonzero for the top k experts only;
seed 002, Mixtral: "activating only a sparse subset of model parameters for each token").
The forward line is ``moe_out, moe_aux_loss, moe_z_loss, moe_dropped_fraction = self.moe(x)``.

Routing, per token (x [B, T, D] is flattened to N = B·T tokens):

* logits = x W_gᵀ (+ b); with ``noisy_gating`` and in training mode
  logits += softplus(x W_noiseᵀ) · ε, ε ~ N(0, 1) from torch's global RNG (so
  ``torch.manual_seed`` makes it reproducible; no noise in eval mode);
* p = softmax(logits) (float32); the ``top_k`` largest p are the token's experts, their
  gates renormalized to sum to 1 with ``normalize_top_k`` (Mixtral), else the raw p
  (Switch top-1: the gate is p itself, so the router gets a gradient from the output);
* ``capacity_factor`` cf: each expert takes at most C = ceil(cf·N·k/m) token assignments.
  Priority is by choice rank, then token order: every token's first choice is served before
  any second choice (GShard), and within a rank earlier tokens first (Switch). An assignment
  over capacity is dropped -- it contributes nothing to that token's output (the residual
  connection around the layer carries the token). ``dropped_fraction`` = dropped / (N·k).

Dispatch is grouped by expert: the N·k (token, expert) assignments are sorted by expert
(stable, so the priority order survives), each expert runs once on the gathered rows of its
tokens, and the gate-weighted results are scatter-added back (``index_add_``) -- k/m of the
work of running every expert on every token (:func:`dense_moe` does that, as a reference).

Outputs besides ``out``: ``aux_loss`` = m · Σ_e f_e · P_e (Switch load balancing; f_e the
fraction of tokens whose first choice is e, P_e the mean router probability of e over the
tokens) and ``z_loss`` = mean over tokens of logsumexp(logits)² (ST-MoE), both float32 scalars
computed from the logits the routing used.

State (the front end's layout): ``router.weight [m, D]`` (+ ``router.bias [m]``,
``router.w_noise [m, D]``), ``experts.<i>.{gate,up,down}.weight`` (swiglu, as
:class:`~nngraph.compilers.torch.ops.dense.GatedMLP`) or ``experts.<i>.{up,down}.weight`` (ffn, as
:class:`~nngraph.compilers.torch.ops.dense.MLP`), with biases when ``bias``; ``shared_expert.*`` the
same. With ``expert_block`` every expert is its own instance of the compiled block
(:mod:`._subgraph`), seeded separately. Default init: router and built-in experts
normal(0, 0.02), biases 0, w_noise 0 (Shazeer et al. start the noise at zero); a block's
own defaults for expert blocks.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Emit, NodeCtx, torch_op
from ._subgraph import call_function, function_module, function_spec
from .dense import MLP, GatedMLP


class Router(nn.Module):
    """The gating linear: ``weight [m, D]``, optional ``bias [m]`` and noise projection ``w_noise [m, D]``."""

    def __init__(self, d: int, experts: int, bias: bool = False, noisy: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(experts, d))
        self.bias = nn.Parameter(torch.zeros(experts)) if bias else None
        self.w_noise = nn.Parameter(torch.zeros(experts, d)) if noisy else None
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.linear(x, self.weight, self.bias)
        if self.w_noise is not None and self.training:
            logits = logits + F.softplus(F.linear(x, self.w_noise)) * torch.randn_like(logits)
        return logits


def _expert(spec: dict[str, Any] | None, d: int, hidden: int | None, kind: str, activation: str, bias: bool) -> nn.Module:
    if spec is not None:
        fn = function_module(spec)
        fn.nng_inputs = list(spec["inputs"])  # type: ignore[attr-defined]
        return fn
    if kind == "swiglu":
        return GatedMLP(d, hidden, d, "silu", bias)
    return MLP(d, hidden, d, activation, bias)


def capacity(cf: float | None, tokens: int, top_k: int, experts: int) -> int | None:
    """Expert capacity ceil(cf·tokens·top_k/experts), or None for no limit."""
    return None if cf is None else math.ceil(cf * tokens * top_k / experts)


def _call_expert(expert: nn.Module, x: torch.Tensor) -> torch.Tensor:
    inputs = getattr(expert, "nng_inputs", None)
    return expert(x) if inputs is None else call_function(expert, inputs, {inputs[0]: x})


def grouped_dispatch(x: torch.Tensor, idx: torch.Tensor, gates: torch.Tensor, experts: Sequence[nn.Module],
                     cap: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_j gates[:, j] · experts[idx[:, j]](x), grouped by expert; returns (out, dropped fraction).

    x [N, D]; idx, gates [N, k]. Assignments are ordered rank-major (all first choices, then all
    second choices, ...), stably sorted by expert, truncated to ``cap`` per expert, and each expert
    runs once on its gathered tokens. Each gate-weighted result is copied back to its assignment's
    row of an [k·N, D] buffer (``index_copy_``: every row is written at most once, which is several
    times faster on CPU than ``index_add_`` into [N, D]), and the k rows of each token are summed.
    """
    n, k = idx.shape
    flat_e = idx.t().reshape(-1)
    flat_tok = torch.arange(n, device=x.device).repeat(k)
    flat_g = gates.t().reshape(-1)
    order = torch.argsort(flat_e, stable=True)
    counts = torch.bincount(flat_e, minlength=len(experts))
    kept = counts if cap is None else counts.clamp(max=cap)
    dropped = (counts - kept).sum().to(torch.float32) / max(n * k, 1)
    tok_sorted, g_sorted = flat_tok[order], flat_g[order]
    rows = x.new_zeros(n * k, x.shape[-1])
    start = 0
    for e, (c, kc) in enumerate(zip(counts.tolist(), kept.tolist())):
        if kc:
            y = _call_expert(experts[e], x[tok_sorted[start:start + kc]])
            rows.index_copy_(0, order[start:start + kc], y * g_sorted[start:start + kc, None].to(y.dtype))
        start += c
    return rows.view(k, n, -1).sum(dim=0), dropped


def dense_moe(x: torch.Tensor, gates_full: torch.Tensor, experts: Sequence[nn.Module]) -> torch.Tensor:
    """Reference: every expert on every token, Σ_e gates_full[:, e] · E_e(x) (gates_full [N, m], zeros off the top k)."""
    out = torch.zeros_like(x)
    for e, expert in enumerate(experts):
        out = out + _call_expert(expert, x) * gates_full[:, e, None].to(x.dtype)
    return out


def route(logits: torch.Tensor, top_k: int, normalize: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probs [N, m] float32, gates [N, k], expert ids [N, k]) from router logits."""
    probs = logits.float().softmax(dim=-1)
    gates, idx = probs.topk(top_k, dim=-1)
    if normalize:
        gates = gates / gates.sum(dim=-1, keepdim=True)
    return probs, gates, idx


def switch_aux_loss(probs: torch.Tensor, first_choice: torch.Tensor) -> torch.Tensor:
    """m · Σ_e f_e · P_e: f_e = share of tokens whose first choice is e, P_e = mean probability of e."""
    n, m = probs.shape
    f = torch.bincount(first_choice, minlength=m).to(probs.dtype) / max(n, 1)
    return m * (f * probs.mean(dim=0)).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """mean over tokens of logsumexp(logits)² (ST-MoE)."""
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


class MoE(nn.Module):
    """Top-k routed experts with grouped dispatch; ``forward(x) -> (out, aux_loss, z_loss, dropped_fraction)``."""

    def __init__(self, d: int, experts: int, top_k: int = 2, expert: str = "swiglu", hidden: int | None = None,
                 activation: str = "gelu", bias: bool = False, capacity_factor: float | None = None,
                 noisy_gating: bool = False, shared_expert: bool = False, shared_hidden: int | None = None,
                 router_bias: bool = False, normalize_top_k: bool = True, expert_block: dict[str, Any] | None = None):
        super().__init__()
        self.top_k, self.capacity_factor, self.normalize_top_k = top_k, capacity_factor, normalize_top_k
        self.router = Router(d, experts, router_bias, noisy_gating)
        self.experts = nn.ModuleList(_expert(expert_block, d, hidden, expert, activation, bias) for _ in range(experts))
        self.shared_expert = (_expert(expert_block, d, shared_hidden or hidden, expert, activation, bias)
                              if shared_expert else None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = x.reshape(-1, x.shape[-1])
        logits = self.router(flat)
        probs, gates, idx = route(logits, self.top_k, self.normalize_top_k)
        cap = capacity(self.capacity_factor, flat.shape[0], self.top_k, len(self.experts))
        out, dropped = grouped_dispatch(flat, idx, gates, self.experts, cap)
        if self.shared_expert is not None:
            out = out + _call_expert(self.shared_expert, flat)
        return out.reshape(x.shape), switch_aux_loss(probs, idx[:, 0]), router_z_loss(logits), dropped

    def extra_repr(self) -> str:
        return (f"top_k={self.top_k}, capacity_factor={self.capacity_factor}, "
                f"normalize_top_k={self.normalize_top_k}")


def _moe_module(ctx: NodeCtx) -> MoE:
    p = ctx.params
    return MoE(ctx.in_features, p["experts"], p["top_k"], p["expert"], p["hidden"], p["activation"], p["bias"],
               p["capacity_factor"], p["noisy_gating"], p["shared_expert"], p["shared_hidden"], p["router_bias"],
               p["normalize_top_k"], function_spec(ctx, "expert_block"))


def _moe_init(ctx: NodeCtx) -> dict[str, Any]:
    router = {"router.weight": ("normal", {"std": 0.02}), "router.bias": "zeros", "router.w_noise": "zeros"}
    if ctx.params.get("expert_block") is not None:
        return router  # expert blocks keep their own initialization
    return {**router, "weight": ("normal", {"std": 0.02}), "bias": "zeros"}


@torch_op("moe", module=_moe_module, init=_moe_init)
def moe(ctx: NodeCtx, e: Emit) -> str:
    """``self.moe(x)`` -> (out, aux_loss, z_loss, dropped_fraction)."""
    return f"{e.self}({e.x})"
