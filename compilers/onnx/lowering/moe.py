"""Export lowering of ``moe``: the same top-k routing, capacity dropping and grouped dispatch, with dynamic token counts.

The torch forward (compilers/torch/ops/moe.py) sizes its loop by ``counts.tolist()`` and computes
the capacity and the loss denominators with Python arithmetic on the token count, which a trace
would freeze. Here everything data-dependent stays a tensor (seed 000, Transformers section,
"mixtures-of-experts"; GShard/Switch dispatch):

* the N·k assignments in rank-major order (every first choice before any second choice, tokens in
  order) -- the priority order of the torch implementation;
* ``capacity_factor`` cf: an assignment is kept when fewer than C = ceil(cf·N·k/m) earlier
  assignments chose the same expert (its position is a cumulative sum over a one-hot, C is
  computed in float64 from the run-time N, as the torch code does in Python);
* dispatch: for each expert e (a loop over the m experts, fixed by the spec), the kept assignments
  to e are found with ``NonZero`` -- a dynamic number of rows --, the expert runs on exactly those
  tokens, and the gate-weighted rows are scatter-added into the output (``ScatterElements`` with
  ``reduction="add"``). Only k/m of the expert work, as in torch; an expert without tokens runs on
  zero rows.
* ``aux_loss`` (Switch load balancing), ``z_loss`` and ``dropped_fraction`` from the run-time N.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .registry import lowering

if TYPE_CHECKING:
    import torch


@lowering("moe", "top-k routing with run-time capacity; per-expert NonZero gather -> expert -> ScatterElements(add)")
def moe_forward(module: Any, io: Any, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """:meth:`nngraph.compilers.torch.ops.moe.MoE.forward` without Python-level data dependence."""
    import torch
    import torch.nn.functional as F

    from nngraph.compilers.torch.ops.moe import _call_expert, route, router_z_loss

    flat = x.reshape(-1, x.shape[-1])
    logits = module.router(flat)
    probs, gates, idx = route(logits, module.top_k, module.normalize_top_k)
    m, k = len(module.experts), module.top_k
    n = torch._shape_as_tensor(flat)[0]                      # traced: the run-time token count
    flat_e = idx.t().reshape(-1)                             # [k·N], rank-major
    flat_tok = torch.arange(n).repeat(k)
    flat_g = gates.t().reshape(-1)
    onehot = F.one_hot(flat_e, m)                            # [k·N, m]
    if module.capacity_factor is not None:
        pos = (onehot.cumsum(0) * onehot).sum(-1) - 1        # earlier assignments to the same expert
        cap = torch.ceil(n.to(torch.float64) * float(module.capacity_factor) * k / m)
        kept = pos.to(torch.float64) < cap
    else:
        kept = torch.ones_like(flat_e, dtype=torch.bool)
    total = (n * k).clamp(min=1).to(torch.float32)
    dropped = (~kept).sum().to(torch.float32) / total
    out = torch.zeros_like(flat)
    for e, expert in enumerate(module.experts):
        sel = ((flat_e == e) & kept).nonzero().squeeze(-1)
        tok = flat_tok[sel]
        y = _call_expert(expert, flat[tok])
        out = out.index_add(0, tok, y * flat_g[sel].unsqueeze(-1).to(y.dtype))
    if module.shared_expert is not None:
        out = out + _call_expert(module.shared_expert, flat)
    f = F.one_hot(idx[:, 0], m).sum(0).to(probs.dtype) / n.clamp(min=1).to(probs.dtype)
    aux = m * (f * probs.mean(dim=0)).sum()
    return out.reshape(x.shape), aux, router_z_loss(logits), dropped
