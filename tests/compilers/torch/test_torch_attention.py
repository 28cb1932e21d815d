"""attention compiled to torch: against torch.nn.MultiheadAttention with copied weights (self, cross, key
padding, causal; max abs diff <= 1e-5), grouped-query attention against per-group formulas, dropout,
parameter counts and layout, and the generated forward line."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nngraph.compilers.torch import state_dict_for

D, H = 16, 4


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() <= tol


def _randomize(model: nn.Module, std: float = 0.3) -> None:
    """O(1) outputs instead of the small ones of the normal(0, 0.02) init, so 1e-5 is a meaningful bound."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def _mha_from(attn: nn.Module, kdim: int | None = None) -> nn.MultiheadAttention:
    """nn.MultiheadAttention (batch_first) holding a compiled attention's weights."""
    mha = nn.MultiheadAttention(D, H, batch_first=True, kdim=kdim, vdim=kdim).eval()
    with torch.no_grad():
        if hasattr(attn, "qkv"):
            mha.in_proj_weight.copy_(attn.qkv.weight)
            mha.in_proj_bias.copy_(attn.qkv.bias)
        elif kdim is None:
            mha.in_proj_weight.copy_(torch.cat([attn.q.weight, attn.k.weight, attn.v.weight]))
            mha.in_proj_bias.copy_(torch.cat([attn.q.bias, attn.k.bias, attn.v.bias]))
        else:
            mha.q_proj_weight.copy_(attn.q.weight)
            mha.k_proj_weight.copy_(attn.k.weight)
            mha.v_proj_weight.copy_(attn.v.weight)
            mha.in_proj_bias.copy_(torch.cat([attn.q.bias, attn.k.bias, attn.v.bias]))
        mha.out_proj.weight.copy_(attn.out.weight)
        mha.out_proj.bias.copy_(attn.out.bias)
    return mha


X = f"x: {{shape: [batch, seq, {D}], dtype: float32}}"


@pytest.mark.parametrize("qkv", ["fused", "separate"])
def test_self_attention_matches_multihead_attention(run_op, qkv):
    model, graph = run_op(f"{{name: n, op: attention, in: x, heads: {H}, qkv: {qkv}}}", X)
    _randomize(model)
    x = _rand(3, 7, D)
    want, _ = _mha_from(model.n)(x, x, x, need_weights=False)
    _close(model(x), want)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 4 * D * D + 4 * D


def test_cross_attention_matches_multihead_attention_with_kdim(run_op):
    model, graph = run_op(f"{{name: n, op: attention, in: {{x: x, context: c}}, heads: {H}}}",
                          f"{X}\nc: {{shape: [batch, src, 10], dtype: float32}}")
    _randomize(model)
    assert model.n.k.weight.shape == (D, 10) and model.n.cross
    x, c = _rand(2, 5, D), _rand(2, 9, 10, seed=1)
    want, _ = _mha_from(model.n, kdim=10)(x, c, c, need_weights=False)
    _close(model(x, c), want)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params


def test_key_padding_from_bool_input_and_from_lengths_match_multihead_attention(run_op):
    kp_model, _ = run_op(f"{{name: n, op: attention, in: {{x: x, key_padding: kp}}, heads: {H}, mask: key_padding}}",
                         f"{X}\nkp: {{shape: [batch, seq], dtype: bool}}")
    len_model, _ = run_op(f"{{name: n, op: attention, in: {{x: x, lengths: lengths}}, heads: {H}, mask: key_padding}}",
                          f"{X}\nlengths: {{shape: [batch], dtype: int64}}")
    _randomize(kp_model)
    x = _rand(3, 6, D)
    lengths = torch.tensor([6, 2, 4])
    pad = torch.arange(6)[None, :] >= lengths[:, None]  # True = padding
    want, _ = _mha_from(kp_model.n)(x, x, x, key_padding_mask=pad, need_weights=False)
    len_model.load_state_dict(kp_model.state_dict())
    _close(kp_model(x, pad), want)
    _close(len_model(x, lengths), want)


def test_causal_mask_matches_multihead_attention_and_ignores_the_future(run_op):
    model, _ = run_op(f"{{name: n, op: attention, in: x, heads: {H}, qkv: fused, mask: causal}}", X)
    _randomize(model)
    x = _rand(2, 8, D)
    future = torch.triu(torch.ones(8, 8, dtype=torch.bool), 1)  # True = not allowed
    want, _ = _mha_from(model.n)(x, x, x, attn_mask=future, need_weights=False)
    _close(model(x), want)
    changed = x.clone()
    changed[:, 5:] = _rand(2, 3, D, seed=7)
    _close(model(changed)[:, :5], model(x)[:, :5], 1e-6)


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_grouped_query_attention_shares_each_kv_head_across_its_query_group(run_op, kv_heads):
    model, graph = run_op(f"{{name: n, op: attention, in: x, heads: {H}, kv_heads: {kv_heads}, bias: false, "
                          "out_bias: false}", X)
    d = D // H
    a = model.n
    _randomize(a)
    assert a.k.weight.shape == (kv_heads * d, D)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 2 * D * D + 2 * kv_heads * d * D
    x = _rand(2, 5, D)
    q = (x @ a.q.weight.T).view(2, 5, H, d)
    k = (x @ a.k.weight.T).view(2, 5, kv_heads, d)
    v = (x @ a.v.weight.T).view(2, 5, kv_heads, d)
    heads = []
    for i in range(H):  # seed 002, "Grouped-query attention": query head i reads kv head floor(i·G/H)
        g = i * kv_heads // H
        p = torch.softmax(q[:, :, i] @ k[:, :, g].transpose(1, 2) / math.sqrt(d), dim=-1)
        heads.append(p @ v[:, :, g])
    _close(model(x), torch.cat(heads, dim=-1) @ a.out.weight.T)


def test_scale_is_the_score_multiplier_and_head_dim_may_differ_from_d_model_over_heads(run_op):
    model, graph = run_op(f"{{name: n, op: attention, in: x, heads: 2, head_dim: 3, scale: 1.0, bias: false}}", X)
    a = model.n
    _randomize(a)
    assert a.q.weight.shape == (6, D) and a.out.weight.shape == (D, 6)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    x = _rand(1, 4, D)
    q, k, v = (x @ a.q.weight.T).view(1, 4, 2, 3), (x @ a.k.weight.T).view(1, 4, 2, 3), (x @ a.v.weight.T).view(1, 4, 2, 3)
    p = torch.softmax(torch.einsum("bthd,bshd->bhts", q, k), dim=-1)  # scale 1.0: no 1/sqrt(d)
    o = torch.einsum("bhts,bshd->bthd", p, v).reshape(1, 4, 6)
    _close(model(x), o @ a.out.weight.T + a.out.bias)


def test_attention_dropout_applies_only_in_training(run_op):
    model, _ = run_op(f"{{name: n, op: attention, in: x, heads: {H}, dropout: 0.5}}", X)
    _randomize(model)
    x = _rand(2, 6, D)
    model.eval()
    _close(model(x), _mha_from(model.n)(x, x, x, need_weights=False)[0])
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert (a - model(x)).abs().max() > 1e-3


def test_state_names_follow_the_front_end_layout(run_op):
    model, _ = run_op(f"{{name: n, op: attention, in: x, heads: {H}, qkv: fused, "
                      "position: {type: t5_bias, num_buckets: 8, max_distance: 16}}", X)
    assert {k: tuple(v.shape) for k, v in state_dict_for(model).items()} == {
        "n.qkv.weight": (3 * D, D), "n.qkv.bias": (3 * D,), "n.out.weight": (D, D), "n.out.bias": (D,),
        "n.rel_bias.weight": (8, H)}
    model, graph = run_op(f"{{name: n, op: attention, in: x, heads: {H}, bias: false, kv_heads: 2, "
                          "position: {type: shaw, max_distance: 3, values: true}}", X)
    assert {k: tuple(v.shape) for k, v in state_dict_for(model).items()} == {
        "n.q.weight": (D, D), "n.k.weight": (8, D), "n.v.weight": (8, D), "n.out.weight": (D, D),
        "n.out.bias": (D,), "n.rel_k": (7, 4), "n.rel_v": (7, 4)}
    assert sum(p.numel() for p in model.parameters()) == graph.total_params


def test_generated_forward_passes_connected_inputs_by_name(compile_text):
    _, model = compile_text(f"""
        nngraph: 1
        name: t
        inputs:
          {X}
          lengths: {{shape: [batch], dtype: int64}}
        graph:
          - {{name: attn, op: attention, in: {{x: x, lengths: lengths}}, heads: {H}, mask: key_padding}}
        outputs: [attn]
        """)
    assert "attn = self.attn(x, lengths=lengths)" in model.source


def test_masked_rows_with_no_visible_key_stay_finite(run_op):
    model, _ = run_op(f"{{name: n, op: attention, in: {{x: x, lengths: lengths}}, heads: {H}, mask: key_padding}}",
                      f"{X}\nlengths: {{shape: [batch], dtype: int64}}")
    out = model(_rand(2, 4, D), torch.tensor([0, 4]))
    assert torch.isfinite(out).all()


def test_backward_reaches_every_parameter(run_op):
    model, _ = run_op(f"{{name: n, op: attention, in: x, heads: {H}, kv_heads: 2, mask: causal, "
                      "position: {type: shaw, max_distance: 2, values: true}}", X)
    model(_rand(2, 5, D)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
