"""Positions on the torch path: RoPE ((R_m q)·(R_n k) depends only on n - m; rotate-half pairs; partial,
NTK and YaRN), ALiBi and T5 bucket biases against the front end's Python formulas, Shaw relative
scores against the paper's per-pair formula, and position_embedding (learned / sinusoidal / offsets)."""

from __future__ import annotations

import math

import pytest
import torch

from nngraph.compilers.torch.ops import attention_positions as P
from nngraph.compilers.torch.ops.position import sinusoid_table
from nngraph.attention.positions import alibi_bias, parse_position, rope_inv_freq, shaw_index, t5_bucket
from nngraph.ops.position import sinusoidal


def _rope(**kw) -> dict:
    return parse_position({"type": "rope", **kw})[1]


def _rotated(x: torch.Tensor, params: dict, m: int) -> torch.Tensor:
    return P.apply_rope(x.view(1, 1, 1, -1), params, torch.tensor([m])).view(-1)


ROPES = {"plain": {}, "base_500": {"base": 500.0}, "partial": {"fraction": 0.5},
         "ntk": {"scaling": "ntk", "factor": 4.0}, "yarn": {"scaling": "yarn", "factor": 8.0, "original_max_len": 64},
         "linear": {"scaling": "linear", "factor": 4.0}, "llama3": {"scaling": "llama3", "factor": 8.0, "original_max_len": 64}}


@pytest.mark.parametrize("name", list(ROPES))
def test_rope_dot_product_depends_only_on_the_offset(name):
    """Seed 002, "Rotary Positional Embeddings": (R_m q)ᵀ(R_n k) = qᵀ R_{n-m} k."""
    params = _rope(**ROPES[name])
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64)
    for delta in (0, 1, 5, -3, 37):
        dots = [_rotated(q, params, m) @ _rotated(k, params, m + delta) for m in (0, 3, 11, 100, 1000)]
        assert max(dots) - min(dots) < 1e-9 * max(1.0, abs(dots[0]))
    assert abs(_rotated(q, params, 0) @ _rotated(k, params, 1) - _rotated(q, params, 0) @ _rotated(k, params, 2)) > 1e-6


def test_rope_rotates_dim_i_with_dim_i_plus_half_by_m_theta_i():
    """Rotate-half convention (GPT-NeoX / HF LLaMA): pair (i, i + d/2) turns by m·θ_i, θ_i = base^(-2i/d)."""
    params = _rope(base=100.0)
    x = torch.randn(8, dtype=torch.float64)
    m = 3
    got = _rotated(x, params, m)
    for i in range(4):
        a = m * 100.0 ** (-2 * i / 8)
        xi, xj = x[i].item(), x[i + 4].item()
        assert got[i].item() == pytest.approx(xi * math.cos(a) - xj * math.sin(a), abs=1e-12)
        assert got[i + 4].item() == pytest.approx(xj * math.cos(a) + xi * math.sin(a), abs=1e-12)


def test_partial_rope_leaves_the_unrotated_dims_alone():
    params = _rope(fraction=0.25)
    x = torch.randn(16, dtype=torch.float64)
    got = _rotated(x, params, 7)
    assert torch.equal(got[4:], x[4:]) and not torch.allclose(got[:4], x[:4])
    assert got[:4].norm().item() == pytest.approx(x[:4].norm().item(), rel=1e-12)  # a rotation


def test_rope_frequencies_come_from_the_front_end_formula_with_yarn_attention_factor():
    params = _rope(scaling="yarn", factor=4.0, original_max_len=32)
    cos, sin = P.rope_cos_sin(params, 8, torch.tensor([2]), torch.float64)
    inv = rope_inv_freq(8, scaling="yarn", factor=4.0, original_max_len=32)
    mscale = 0.1 * math.log(4.0) + 1.0
    want = [mscale * math.cos(2 * f) for f in inv] * 2
    assert cos[0].tolist() == pytest.approx(want, abs=1e-12)
    assert (cos ** 2 + sin ** 2)[0].tolist() == pytest.approx([mscale ** 2] * 8, abs=1e-12)


#: our RoPE params -> transformers' rope_parameters for the same scaling (head_dim 32, base 500: with
#: original_max_len 64 llama3's kept, blended and divided wavelength bands all hold frequencies)
HF_ROPES = {"linear": ({"scaling": "linear", "factor": 4.0}, {"rope_type": "linear", "factor": 4.0}),
            "llama3": ({"scaling": "llama3", "factor": 8.0, "original_max_len": 64, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0},
                       {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 64,
                        "low_freq_factor": 1.0, "high_freq_factor": 4.0}),
            "yarn": ({"scaling": "yarn", "factor": 4.0, "original_max_len": 64},
                     {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})}


@pytest.mark.parametrize("name", HF_ROPES)
def test_scaled_rope_cos_sin_equal_transformers_rotary_embedding(name):
    """The oracle: transformers' LlamaRotaryEmbedding (its ROPE_INIT_FUNCTIONS) at positions past the original length."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    ours, theirs = HF_ROPES[name]
    config = transformers.LlamaConfig(hidden_size=64, num_attention_heads=2, max_position_embeddings=256,
                                      rope_parameters={"rope_theta": 500.0, **theirs})
    positions = torch.tensor([0, 1, 7, 63, 200])
    want_cos, want_sin = LlamaRotaryEmbedding(config)(torch.zeros(1, 5, 32), positions[None])
    cos, sin = P.rope_cos_sin(_rope(base=500.0, **ours), 32, positions)
    plain, _ = P.rope_cos_sin(_rope(base=500.0), 32, positions)
    # transformers rounds θ_i to float32 first, so the angles m·θ_i differ by ~m·1e-7 (measured 1.1e-5 at m = 200)
    assert (cos - want_cos[0]).abs().max().item() <= 1e-4 and (sin - want_sin[0]).abs().max().item() <= 1e-4
    assert (plain - want_cos[0]).abs().max().item() > 0.1  # the scaling changes the rotation


def test_alibi_bias_equals_the_front_end_formula_with_offset():
    bias = P.alibi(6, 3, 8, offset=5, dtype=torch.float64)
    assert bias.shape == (1, 6, 3, 8)
    for h in range(6):
        for i in range(3):
            for j in range(8):
                assert bias[0, h, i, j].item() == pytest.approx(alibi_bias(h, 5 + i, j, 6), abs=1e-12)


@pytest.mark.parametrize("bidirectional,buckets,max_distance", [(True, 32, 128), (False, 32, 128), (True, 8, 20),
                                                                 (False, 16, 40)])
def test_t5_buckets_equal_the_front_end_python_buckets(bidirectional, buckets, max_distance):
    rel = torch.arange(-300, 301)
    got = P.t5_buckets(rel, bidirectional, buckets, max_distance)
    assert got.tolist() == [t5_bucket(int(r), bidirectional, buckets, max_distance) for r in rel]


def test_t5_bias_looks_up_the_table_by_bucket_of_key_minus_query():
    params = parse_position({"type": "t5_bias", "num_buckets": 8, "max_distance": 16})[1]
    table = torch.randn(8, 3)
    bias = P.t5_bias(table, params, 4, 6, offset=2)
    for h in range(3):
        for i in range(4):
            for j in range(6):
                assert bias[0, h, i, j] == table[t5_bucket(j - (i + 2), True, 8, 16), h]


def test_shaw_scores_and_values_follow_the_per_pair_formula(run_op):
    model, graph = run_op("{name: n, op: attention, in: x, heads: 2, bias: false, out_bias: false, "
                          "position: {type: shaw, max_distance: 2, values: true}}",
                          "x: {shape: [batch, seq, 8], dtype: float64}")
    model = model.double().requires_grad_(False)
    a = model.n
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    q = (x @ a.q.weight.T).view(5, 2, 4)
    k = (x @ a.k.weight.T).view(5, 2, 4)
    v = (x @ a.v.weight.T).view(5, 2, 4)
    out = torch.zeros(5, 2, 4, dtype=torch.float64)
    for h in range(2):
        e = torch.stack([torch.stack([q[i, h] @ (k[j, h] + a.rel_k[shaw_index(i, j, 2)]) / 2.0 for j in range(5)])
                         for i in range(5)])  # e_ij = q_i·(k_j + a^K_ij)/√d (Shaw et al. 2018)
        p = torch.softmax(e, dim=-1)
        for i in range(5):
            out[i, h] = sum(p[i, j] * (v[j, h] + a.rel_v[shaw_index(i, j, 2)]) for j in range(5))
    assert (model(x)[0] - out.reshape(5, 8) @ a.out.weight.T).abs().max() < 1e-12


def test_sinusoidal_table_equals_the_front_end_formula():
    table = sinusoid_table(torch.arange(6), 10, dtype=torch.float64)
    for pos in range(6):
        for i in range(10):
            assert table[pos, i].item() == pytest.approx(sinusoidal(pos, i, 10), abs=1e-12)


def test_learned_position_embedding_adds_table_rows_and_reads_positions_input(run_op):
    model, graph = run_op(["{name: pe, op: position_embedding, in: x, type: learned, max_len: 10}",
                           "{name: n, op: position_embedding, in: {x: x, positions: pos}, type: learned, max_len: 10}"],
                          "x: {shape: [batch, seq, 4], dtype: float32}\npos: {shape: [batch, seq], dtype: int64}",
                          outputs="[pe, n]")
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 80
    x, pos = torch.randn(2, 3, 4), torch.tensor([[7, 8, 9], [0, 0, 1]])
    out = model(x, pos)
    assert torch.equal(out["pe"], x + model.pe.weight[:3])
    assert torch.equal(out["n"], x + model.n.weight[pos])


def test_sinusoidal_position_embedding_has_no_state(run_op):
    model, graph = run_op("{name: n, op: position_embedding, in: x, type: sinusoidal}",
                          "x: {shape: [batch, seq, 6], dtype: float32}")
    assert graph.total_params == 0 and not list(model.state_dict())
    x = torch.zeros(1, 4, 6)
    assert torch.allclose(model(x)[0], sinusoid_table(torch.arange(4), 6))
