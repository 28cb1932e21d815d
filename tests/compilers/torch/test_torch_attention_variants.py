"""Efficient attention variants compiled to torch: linear attention (parallel vs causal recurrent form,
and the kernel formula), Performer FAVOR+ (relative error vs exact softmax attention falls as the number
of random features grows; seeded, orthogonal features), Linformer (E/F projections formula), counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nngraph.compilers.torch.ops.attention_variants import orthogonal_features

X = "x: {shape: [batch, seq, 16], dtype: float32}"


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("qkv", ["separate", "fused"])
def test_linear_attention_causal_parallel_form_equals_the_recurrent_form(run_op, qkv):
    model, graph = run_op(f"{{name: n, op: linear_attention, in: x, heads: 4, qkv: {qkv}, causal: true}}", X)
    assert _params(model) == graph.total_params == 4 * 16 * 16 + 4 * 16
    x = torch.randn(2, 12, 16)
    assert (model(x) - model.n.recurrent(x)).abs().max().item() <= 1e-5


def test_linear_attention_non_causal_is_the_elu_kernel_formula(run_op):
    model, _ = run_op("{name: n, op: linear_attention, in: x, heads: 2, bias: false, out_bias: false, eps: 0.0}", X)
    a = model.n
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    model = model.double()
    q, k, v = ((x @ w.weight.T).view(6, 2, 8) for w in (a.q, a.k, a.v))
    phi = lambda t: torch.where(t > 0, t + 1, torch.exp(t))  # elu(x) + 1 (Katharopoulos et al. 2020)
    out = torch.zeros(6, 2, 8, dtype=torch.float64)
    for h in range(2):
        sim = phi(q[:, h]) @ phi(k[:, h]).T  # φ(q_i)ᵀφ(k_j)
        out[:, h] = (sim @ v[:, h]) / sim.sum(-1, keepdim=True)
    assert (model(x)[0] - out.reshape(6, 16) @ a.out.weight.T).abs().max() < 1e-12


def _relative_error(num_features: int, causal: bool = False) -> float:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 64, 16, generator=g, dtype=torch.float64) * s for s in (0.5, 0.5, 1.0))
    scores = q @ k.transpose(-2, -1) / 4.0
    if causal:
        scores = scores.masked_fill(torch.ones(64, 64, dtype=torch.bool).triu(1), float("-inf"))
    exact = torch.softmax(scores, dim=-1) @ v
    from nngraph.compilers.torch.ops.attention_variants import PerformerAttention

    errs = []
    for seed in range(3):
        m = PerformerAttention(d_model=64, d_ctx=64, heads=4, kv_heads=4, head_dim=16, num_features=num_features,
                               seed=seed, causal=causal).double()
        o = m.attend(q, k, v)
        errs.append(((o - exact).norm() / exact.norm()).item())
    return sum(errs) / len(errs)


@pytest.mark.parametrize("causal", [False, True])
def test_performer_error_against_exact_softmax_falls_as_features_grow(causal):
    errors = {m: _relative_error(m, causal) for m in (16, 64, 256, 1024)}
    # measured (non-causal): ~0.41, 0.31, 0.15, 0.09 -- roughly 1/sqrt(m)
    assert errors[16] > errors[64] > errors[256] > errors[1024]
    assert errors[1024] < 0.15 and errors[16] / errors[1024] > 3


def test_performer_features_are_seeded_orthogonal_blocks_and_not_state(run_op):
    a = orthogonal_features(2, 40, 16, seed=5)
    assert torch.equal(a, orthogonal_features(2, 40, 16, seed=5)) and not torch.equal(a, orthogonal_features(2, 40, 16, 6))
    block = a[0, :16] / a[0, :16].norm(dim=-1, keepdim=True)
    assert torch.allclose(block @ block.T, torch.eye(16), atol=1e-5)
    model, graph = run_op("{name: n, op: performer_attention, in: x, heads: 4, num_features: 32, seed: 3}", X)
    assert model.n.omega.shape == (4, 32, 4) and "n.omega" not in model.state_dict()
    assert _params(model) == graph.total_params
    assert model.n.num_features == 32
    default, _ = run_op("{name: n, op: performer_attention, in: x, heads: 2}", X)
    assert default.n.num_features == int(8 * math.log(8))  # ⌊d ln d⌋


def test_linformer_projects_keys_and_values_along_the_sequence(run_op):
    model, graph = run_op("{name: n, op: linformer_attention, in: x, heads: 2, k: 3, max_len: 10, bias: false, "
                          "out_bias: false}", X)
    assert _params(model) == graph.total_params == 4 * 16 * 16 + 2 * 10 * 3
    a = model.n
    x = torch.randn(1, 7, 16)
    q, k, v = ((x[0] @ w.weight.T).view(7, 2, 8).transpose(0, 1) for w in (a.q, a.k, a.v))
    e, f = a.proj_k[:7], a.proj_v[:7]  # an input of length T < n uses the first T rows
    p = F.softmax(q @ (e.T @ k).transpose(-2, -1) / math.sqrt(8), dim=-1)  # softmax(Q (EᵀK)ᵀ/√d)
    want = (p @ (f.T @ v)).transpose(0, 1).reshape(7, 16) @ a.out.weight.T
    assert (model(x)[0] - want).abs().max() < 1e-5


def test_linformer_share_kv_has_one_projection(run_op):
    model, graph = run_op("{name: n, op: linformer_attention, in: x, heads: 2, k: 3, max_len: 10, share_kv: true}", X)
    assert "n.proj_k" in model.state_dict() and "n.proj_v" not in model.state_dict()
    assert _params(model) == graph.total_params


@pytest.mark.parametrize("op", ["linear_attention", "performer_attention"])
def test_variants_backpropagate_to_every_parameter(run_op, op):
    model, _ = run_op(f"{{name: n, op: {op}, in: x, heads: 2, causal: true}}", X)
    model(torch.randn(2, 5, 16)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
