"""Efficient attention variants: linear (elu+1), Performer (FAVOR+), Linformer — shapes, exact
parameter counts against torch.nn layers, errors with line:col.

Oracles: torch.nn.MultiheadAttention for the shared q/k/v/out projections; Linformer's E, F ∈ R^{n×k}
(seed 000, "Different Types of Transformers") as torch parameters; φ(x) = elu(x) + 1 against torch.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nngraph.ops import attention_variants as v
from _onenode import node_line, one_node, single_error, spec_text

X = {"x": (["batch", "seq", 256], "float32")}


def params_of(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def one(diagnose, node: str, inputs: dict | None = None):
    return one_node(diagnose, node, inputs or X)


def error_at(diagnose, node: str, token: str, inputs: dict | None = None):
    return single_error(diagnose, node, token, inputs or X)


@pytest.mark.parametrize("op_name, extra", [("linear_attention", "causal: true"), ("performer_attention", "num_features: 64")])
def test_kernel_variants_keep_the_shape_and_count_like_multihead_attention(diagnose, op_name, extra):
    n = one(diagnose, f"{{name: n, op: {op_name}, in: x, heads: 4, {extra}}}")
    assert n.out.shape == ("batch", "seq", 256)
    assert n.n_params == params_of(nn.MultiheadAttention(256, 4))


def test_kernel_variants_without_biases(diagnose):
    n = one(diagnose, "{name: n, op: linear_attention, in: x, heads: 4, qkv: fused, bias: false, out_bias: false}")
    assert n.n_params == params_of(nn.MultiheadAttention(256, 4, bias=False))


def test_linformer_adds_e_and_f_projections(diagnose):
    n = one(diagnose, "{name: n, op: linformer_attention, in: x, heads: 4, k: 32, max_len: 512}",
            {"x": (["batch", 512, 256], "float32")})
    e, f = nn.Parameter(torch.empty(512, 32)), nn.Parameter(torch.empty(512, 32))
    assert n.out.shape == ("batch", 512, 256)
    assert n.n_params == params_of(nn.MultiheadAttention(256, 4)) + e.numel() + f.numel()
    shared = one(diagnose, "{name: n, op: linformer_attention, in: x, heads: 4, k: 32, max_len: 512, share_kv: true}")
    assert shared.n_params == params_of(nn.MultiheadAttention(256, 4)) + e.numel()


def test_linformer_accepts_shorter_symbolic_sequences(diagnose):
    n = one(diagnose, "{name: n, op: linformer_attention, in: x, heads: 4, k: 32, max_len: 512}")
    assert n.out.shape == ("batch", "seq", 256)


def test_linformer_k_larger_than_max_len_points_at_k(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: linformer_attention, in: x, heads: 4, k: 64, max_len: 32}", "64")
    assert got == where and "k 64 must not exceed max_len 32" in msg


def test_linformer_sequence_longer_than_max_len_points_at_max_len(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: linformer_attention, in: x, heads: 4, k: 16, max_len: 100}", "100",
                               {"x": (["batch", 128, 256], "float32")})
    assert got == where and "sequence length 128 exceeds max_len 100" in msg


def test_linformer_without_max_len_is_a_missing_parameter(diagnose):
    _, errors = diagnose(spec_text(X, ["{name: n, op: linformer_attention, in: x, heads: 4, k: 16}"]))
    assert [(e[0], e[1]) for e in errors] == [(node_line(0, 1), 5)]
    assert "missing required parameter 'max_len'" in errors[0][2]


def test_variant_heads_not_dividing_d_model_points_at_heads(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: performer_attention, in: x, heads: 3}", "3}")
    assert got == where and "d_model 256 is not divisible by heads 3" in msg


def test_elu_feature_map_is_elu_plus_one():
    xs = [-3.0, -0.5, 0.0, 0.7, 2.0]
    expected = (torch.nn.functional.elu(torch.tensor(xs, dtype=torch.float64)) + 1).tolist()
    assert [v.elu_feature(x) for x in xs] == pytest.approx(expected)
    assert all(v.elu_feature(x) > 0 for x in xs)


def test_performer_default_features_are_d_log_d():
    assert v.performer_features(64) == 266  # ⌊64·ln 64⌋ = ⌊266.17⌋
