"""GShard/GLaM top-2 routing with expert capacity: the compiled moe layer against a straightforward
re-implementation written here (per-token loops): softmax router, the two best experts with gates
renormalized to sum to 1, capacity C = ceil(cf · N · 2 / E), all first choices served (in token order)
before any second choice, assignments over capacity dropped."""

from __future__ import annotations

import math

import pytest
import torch

from nngraph.compilers.torch.ops.moe import MoE


def gshard_reference(x: torch.Tensor, router_w: torch.Tensor, experts, cf: float | None):
    """Returns (out, dropped fraction, kept assignments) computed token by token."""
    n, e = x.shape[0], router_w.shape[0]
    probs = torch.softmax(x @ router_w.T, dim=-1)
    choices = []
    for i in range(n):
        ranked = sorted(range(e), key=lambda j: -probs[i, j].item())[:2]
        g1, g2 = probs[i, ranked[0]], probs[i, ranked[1]]
        choices.append([(ranked[0], g1 / (g1 + g2)), (ranked[1], g2 / (g1 + g2))])
    cap = math.inf if cf is None else math.ceil(cf * n * 2 / e)
    load = [0] * e
    kept = set()
    for rank in (0, 1):                      # GShard: every token's first choice before any second choice
        for i in range(n):
            expert, _ = choices[i][rank]
            if load[expert] < cap:
                load[expert] += 1
                kept.add((i, rank))
    out = torch.zeros_like(x)
    for i in range(n):
        for rank in (0, 1):
            if (i, rank) in kept:
                expert, gate = choices[i][rank]
                out[i] += gate * experts[expert](x[i:i + 1])[0]
    return out, 1 - len(kept) / (2 * n), kept


@pytest.mark.parametrize("cf", [None, 2.0, 1.0, 0.5, 0.25])
@pytest.mark.parametrize("seed", [0, 1])
def test_top2_capacity_and_dropping_match_the_per_token_reference(cf, seed):
    torch.manual_seed(seed)
    d, e, n = 6, 4, 37
    moe = MoE(d, e, top_k=2, expert="ffn", hidden=5, activation="relu", bias=True, capacity_factor=cf,
              normalize_top_k=True).double()
    with torch.no_grad():
        moe.router.weight.normal_(0, 1.0)   # decisive, uneven routing: some experts overflow
        moe.router.weight[0] += 0.8
    x = torch.randn(n, d, dtype=torch.float64)
    out, aux, z, dropped = moe(x)
    want, want_dropped, kept = gshard_reference(x, moe.router.weight, moe.experts, cf)
    assert (out - want).abs().max().item() <= 1e-6  # the router's softmax runs in float32
    assert round(dropped.item() * 2 * n) == round(want_dropped * 2 * n)  # the same assignments dropped
    if cf is None or cf >= 2.0:
        assert want_dropped == 0.0
    if cf is not None and cf <= 0.5:
        assert want_dropped > 0.2 and any(rank == 0 for _, rank in kept)  # overflow really happens


def test_second_choices_are_dropped_before_any_later_first_choice():
    """Every token prefers expert 0, second choice expert 1; capacity ceil(0.5·8·2/4) = 2."""
    moe = MoE(2, 4, top_k=2, expert="ffn", hidden=3, capacity_factor=0.5).double()
    with torch.no_grad():
        moe.router.weight.copy_(torch.tensor([[4.0, 0], [2.0, 0], [0, 0], [-2.0, 0]]))
    x = torch.cat([torch.ones(8, 1), torch.zeros(8, 1)], dim=1).double() * torch.arange(1, 9).double()[:, None]
    out, _, _, dropped = moe(x)
    want, want_dropped, kept = gshard_reference(x, moe.router.weight, moe.experts, 0.5)
    assert kept == {(0, 0), (1, 0), (0, 1), (1, 1)}     # tokens 0 and 1 fill both experts' two slots
    assert dropped.item() == want_dropped == 1 - 4 / 16  # exact in float32: 0.75
    assert (out[2:] == 0).all() and (out - want).abs().max() <= 1e-6
