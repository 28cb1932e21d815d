"""attention op: shapes, exact parameter counts against torch.nn layers, and errors with line:col.

Oracles: torch.nn.MultiheadAttention (fused in-projection with biases; kdim/vdim for cross-attention;
bias=False), torch.nn.Linear stacks for grouped-query layouts, torch.nn.Embedding for T5 bias tables.
"""

from __future__ import annotations

import pytest
from torch import nn

from _onenode import one_node, single_error

X = {"x": (["batch", "seq", 512], "float32")}


def params_of(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def one(diagnose, node: str, inputs: dict | None = None):
    return one_node(diagnose, node, inputs or X)


def error_at(diagnose, node: str, token: str, inputs: dict | None = None):
    return single_error(diagnose, node, token, inputs or X)


# ----- shapes -----------------------------------------------------------------
def test_self_attention_keeps_the_input_shape(diagnose):
    n = one(diagnose, "{name: n, op: attention, in: x, heads: 8, mask: causal}")
    assert n.out.shape == ("batch", "seq", 512) and n.out.dtype == "float32"


def test_cross_attention_output_follows_the_queries_not_the_context(diagnose):
    inputs = {"x": (["batch", "tgt", 512], "float32"), "enc": (["batch", "src", 256], "float32")}
    n = one(diagnose, "{name: n, op: attention, in: {x: x, context: enc}, heads: 8}", inputs)
    assert n.out.shape == ("batch", "tgt", 512)


def test_masks_reading_graph_inputs_accept_them_by_name(diagnose):
    inputs = {**X, "lengths": (["batch"], "int64"), "docs": (["batch", "seq"], "int64")}
    n = one(diagnose, "{name: n, op: attention, in: {x: x, lengths: lengths, doc_ids: docs}, heads: 8, "
                      "mask: {all: [causal, key_padding, document]}}", inputs)
    assert n.out.shape == ("batch", "seq", 512)


def test_key_padding_bool_input_matches_the_context_length(diagnose):
    inputs = {"x": (["batch", "tgt", 64], "float32"), "enc": (["batch", 10, 64], "float32"),
              "pad": (["batch", 10], "bool")}
    n = one(diagnose, "{name: n, op: attention, in: {x: x, context: enc, key_padding: pad}, heads: 4, mask: key_padding}",
            inputs)
    assert n.out.shape == ("batch", "tgt", 64)


# ----- parameter counts -------------------------------------------------------
@pytest.mark.parametrize("d, heads", [(768, 12), (512, 8), (64, 1)])
def test_fused_qkv_with_biases_counts_like_torch_multihead_attention(diagnose, d, heads):
    n = one(diagnose, f"{{name: n, op: attention, in: x, heads: {heads}, qkv: fused}}",
            {"x": (["batch", "seq", d], "float32")})
    assert n.n_params == params_of(nn.MultiheadAttention(d, heads)) == 4 * d * d + 4 * d


def test_gpt2_attention_layer_has_2_362_368_parameters(diagnose):
    # GPT-2 small c_attn [768, 2304] + bias, c_proj [768, 768] + bias
    n = one(diagnose, "{name: n, op: attention, in: x, heads: 12, qkv: fused, mask: causal}",
            {"x": (["batch", "seq", 768], "float32")})
    assert n.n_params == 768 * 2304 + 2304 + 768 * 768 + 768 == 2_362_368


def test_no_biases_counts_like_torch_multihead_attention_without_bias(diagnose):
    n = one(diagnose, "{name: n, op: attention, in: x, heads: 8, bias: false, out_bias: false}")
    assert n.n_params == params_of(nn.MultiheadAttention(512, 8, bias=False)) == 4 * 512 * 512


def test_separate_and_fused_layouts_hold_the_same_parameters(diagnose):
    fused = one(diagnose, "{name: n, op: attention, in: x, heads: 8, qkv: fused}")
    separate = one(diagnose, "{name: n, op: attention, in: x, heads: 8, qkv: separate}")
    assert fused.n_params == separate.n_params


def test_cross_attention_counts_like_torch_with_kdim_vdim(diagnose):
    inputs = {"x": (["batch", "tgt", 512], "float32"), "enc": (["batch", "src", 256], "float32")}
    n = one(diagnose, "{name: n, op: attention, in: {x: x, context: enc}, heads: 8, context_dim: 256}", inputs)
    assert n.n_params == params_of(nn.MultiheadAttention(512, 8, kdim=256, vdim=256))


@pytest.mark.parametrize("heads, kv_heads", [(8, 2), (8, 1), (8, 8), (16, 4)])
def test_grouped_query_attention_counts_like_separate_linears(diagnose, heads, kv_heads):
    d, hd = 512, 512 // heads
    n = one(diagnose, f"{{name: n, op: attention, in: x, heads: {heads}, kv_heads: {kv_heads}, "
                      "bias: false, out_bias: false, position: {type: rope}}")
    layers = nn.ModuleList([nn.Linear(d, heads * hd, bias=False), nn.Linear(d, kv_heads * hd, bias=False),
                            nn.Linear(d, kv_heads * hd, bias=False), nn.Linear(heads * hd, d, bias=False)])
    assert n.n_params == params_of(layers)


def test_explicit_head_dim_need_not_divide_d_model(diagnose):
    n = one(diagnose, "{name: n, op: attention, in: x, heads: 6, kv_heads: 2, head_dim: 80}")
    q, kv = 6 * 80, 2 * 80
    expected = params_of(nn.ModuleList([nn.Linear(512, q), nn.Linear(512, kv), nn.Linear(512, kv), nn.Linear(q, 512)]))
    assert n.n_params == expected


def test_t5_bias_adds_a_buckets_by_heads_table(diagnose):
    n = one(diagnose, "{name: n, op: attention, in: x, heads: 8, bias: false, out_bias: false, scale: 1.0, "
                      "position: {type: t5_bias, num_buckets: 32, max_distance: 128}}")
    assert n.n_params == 4 * 512 * 512 + params_of(nn.Embedding(32, 8))


def test_shaw_adds_2k_plus_1_rows_of_head_dim_per_table(diagnose):
    keys = one(diagnose, "{name: n, op: attention, in: x, heads: 8, position: {type: shaw, max_distance: 4}}")
    both = one(diagnose, "{name: n, op: attention, in: x, heads: 8, position: {type: shaw, max_distance: 4, values: true}}")
    base = params_of(nn.MultiheadAttention(512, 8))
    assert keys.n_params == base + 9 * 64
    assert both.n_params == base + 2 * 9 * 64


@pytest.mark.parametrize("position", ["rope", "alibi", "{type: rope, fraction: 0.5, scaling: ntk, factor: 4.0}"])
def test_parameter_free_positions_add_nothing(diagnose, position):
    n = one(diagnose, f"{{name: n, op: attention, in: x, heads: 8, position: {position}}}")
    assert n.n_params == params_of(nn.MultiheadAttention(512, 8))


# ----- errors -----------------------------------------------------------------
def test_heads_not_dividing_d_model_points_at_heads(diagnose):
    got, where, msg, hint = error_at(diagnose, "{name: n, op: attention, in: x, heads: 7}", "7}")
    assert got == where
    assert "d_model 512 is not divisible by heads 7" in msg and "head_dim" in hint


def test_kv_heads_not_dividing_heads_points_at_kv_heads(diagnose):
    got, where, msg, hint = error_at(diagnose, "{name: n, op: attention, in: x, heads: 8, kv_heads: 3}", "3}")
    assert got == where
    assert "heads 8 is not divisible by kv_heads 3" in msg and "1, 2, 4, 8" in hint


def test_unknown_mask_type_says_did_you_mean(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: x, heads: 8, mask: casual}", "casual")
    assert got == where
    assert "unknown mask type 'casual'; did you mean 'causal'?" in msg


def test_unknown_nested_mask_type_names_its_path(diagnose):
    node = "{name: n, op: attention, in: x, heads: 8, mask: {any: [causal, {type: sliding_windw, window: 4}]}}"
    got, where, msg, _ = error_at(diagnose, node, "{any")
    assert got == where
    assert "mask'.any.1.type" in msg and "did you mean 'sliding_window'?" in msg


def test_mask_parameter_errors_name_the_parameter(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: x, heads: 8, mask: {type: sliding_window, windw: 4}}",
                                  "{type")
    assert got == where
    assert "did you mean 'window'?" in msg
    _, _, msg2, _ = error_at(diagnose, "{name: n, op: attention, in: x, heads: 8, mask: {type: sliding_window, window: 0}}",
                             "{type")
    assert "mask'.window" in msg2 and "must be >= 1, got 0" in msg2


def test_key_padding_without_its_graph_input_points_at_the_mask(diagnose):
    got, where, msg, hint = error_at(diagnose, "{name: n, op: attention, in: x, heads: 8, mask: key_padding}", "key_padding}")
    assert got == where
    assert "mask 'key_padding' needs graph input 'lengths' or 'key_padding'" in msg
    assert "lengths: lengths" in hint


def test_document_mask_without_doc_ids_is_an_error(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: x, heads: 8, mask: {all: [causal, document]}}", "{all")
    assert got == where and "mask 'document' needs graph input 'doc_ids'" in msg


def test_a_connected_input_no_mask_reads_points_at_that_input(diagnose):
    inputs = {**X, "lengths": (["batch"], "int64")}
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: {x: x, lengths: lengths}, heads: 8, mask: causal}",
                                  "lengths}", inputs)
    assert got == where and "input 'lengths' is connected but no mask reads it" in msg


def test_cross_attention_context_dim_mismatch_points_at_context_dim(diagnose):
    inputs = {"x": (["batch", "tgt", 512], "float32"), "enc": (["batch", "src", 256], "float32")}
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: {x: x, context: enc}, heads: 8, context_dim: 512}",
                                  "512}", inputs)
    assert got == where
    assert "context feature dim: expected 512, got 256" in msg


def test_cross_attention_context_of_wrong_rank_points_at_the_context(diagnose):
    inputs = {"x": (["batch", "tgt", 512], "float32"), "enc": (["batch", 256], "float32")}
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: {x: x, context: enc}, heads: 8}", "enc}", inputs)
    assert got == where
    assert "context must be [batch, seq, features], got rank 2 [batch, 256]" in msg


def test_fused_qkv_is_refused_for_cross_attention(diagnose):
    inputs = {"x": (["batch", "tgt", 512], "float32"), "enc": (["batch", "src", 512], "float32")}
    got, where, msg, hint = error_at(diagnose, "{name: n, op: attention, in: {x: x, context: enc}, heads: 8, qkv: fused}",
                                     "fused", inputs)
    assert got == where and "qkv: fused projects one input" in msg and "separate" in hint


def test_relative_positions_are_refused_for_cross_attention(diagnose):
    inputs = {"x": (["batch", "tgt", 512], "float32"), "enc": (["batch", "src", 512], "float32")}
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: {x: x, context: enc}, heads: 8, position: rope}",
                                  "rope", inputs)
    assert got == where and "cross-attention takes position: none" in msg


def test_document_mask_is_refused_for_cross_attention(diagnose):
    inputs = {"x": (["batch", "tgt", 64], "float32"), "enc": (["batch", "src", 64], "float32"),
              "docs": (["batch", "tgt"], "int64")}
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: {x: x, context: enc, doc_ids: docs}, heads: 4, "
                                            "mask: document}", "document}", inputs)
    assert got == where and "needs self-attention" in msg


def test_key_padding_length_must_match_the_keys(diagnose):
    inputs = {"x": (["batch", 16, 64], "float32"), "pad": (["batch", 12], "bool")}
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: {x: x, key_padding: pad}, heads: 4, mask: key_padding}",
                                  "pad}", inputs)
    assert got == where and "key dim of key_padding (the key sequence length): expected 16, got 12" in msg


def test_lengths_must_be_integers(diagnose):
    inputs = {**X, "lengths": (["batch"], "float32")}
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: {x: x, lengths: lengths}, heads: 8, mask: key_padding}",
                                  "lengths}", inputs)
    assert got == where and "lengths must be an integer [batch] tensor, got float32[batch]" in msg


def test_token_ids_are_refused_as_queries(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: x, heads: 2}", "{name",
                                  {"x": (["batch", "seq", 4], "int64")})
    assert got == where and "x must be a floating-point tensor, got int64" in msg


def test_absolute_position_in_attention_points_to_position_embedding(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: x, heads: 8, position: learned}", "learned")
    assert got == where and "position_embedding" in msg


def test_unknown_position_says_did_you_mean(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: x, heads: 8, position: {type: alibbi}}", "{type")
    assert got == where and "unknown position type 'alibbi'; did you mean 'alibi'?" in msg


def test_yarn_without_original_length_is_an_error(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: x, heads: 8, position: {type: rope, scaling: yarn, "
                                            "factor: 4.0}}", "{type")
    assert got == where and "yarn scaling needs original_max_len" in msg


def test_odd_rotary_dims_are_an_error(diagnose):
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: x, heads: 8, position: {type: rope, fraction: 0.3}}",
                                  "{type")
    assert got == where and "head_dim 64 x fraction 0.3 gives 19" in msg


# ----- per-row position ids ---------------------------------------------------
POS = {**X, "pos": (["batch", "seq"], "int64")}


def test_positions_input_is_accepted_for_every_position_encoding(diagnose):
    for position in ("rope", "alibi", "t5_bias", "shaw"):
        n = one(diagnose, f"{{name: n, op: attention, in: {{x: x, positions: pos}}, heads: 8, position: {position}}}", POS)
        assert n.out.shape == ("batch", "seq", 512) and n.meta["attention"].row_positions


def test_positions_without_a_position_encoding_are_refused(diagnose):
    got, where, msg, hint = error_at(diagnose, "{name: n, op: attention, in: {x: x, positions: pos}, heads: 8}", "pos}", POS)
    assert got == where and "no position encoding that reads it" in msg and "position_embedding" in hint


def test_positions_must_be_integer_batch_by_seq(diagnose):
    bad_dtype = {**X, "pos": (["batch", "seq"], "float32")}
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: {x: x, positions: pos}, heads: 8, position: rope}",
                                  "pos}", bad_dtype)
    assert got == where and "positions must be an integer [batch, seq] tensor" in msg
    short = {"x": (["batch", 16, 512], "float32"), "pos": (["batch", 12], "int64")}
    got, where, msg, _ = error_at(diagnose, "{name: n, op: attention, in: {x: x, positions: pos}, heads: 8, position: alibi}",
                                  "pos}", short)
    assert got == where and "sequence dim of positions (one id per query): expected 16, got 12" in msg
