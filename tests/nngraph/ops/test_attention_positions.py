"""Position encodings inside attention: the registry and its pure-Python formulas.

Oracles: ALiBi's published slopes (Press et al. 2022: 8 heads -> 1/2 ... 1/256), T5 buckets computed
by hand and by the reference tensor implementation (written out here in torch), RoPE frequencies
θ_i = base^(-2i/d), the defining properties of NTK-aware and YaRN scaling, Shaw's clipping.
"""

from __future__ import annotations

import math

import jsonschema
import pytest
import torch

from nngraph.attention import positions as p


def test_alibi_slopes_for_8_heads_are_the_papers_geometric_sequence():
    assert p.alibi_slopes(8) == pytest.approx([1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256])


def test_alibi_slopes_for_16_heads_start_at_2_to_the_minus_half():
    assert p.alibi_slopes(16) == pytest.approx([2 ** (-0.5 * (i + 1)) for i in range(16)])


def test_alibi_slopes_for_12_heads_interleave_the_next_power_of_two():
    # 8-head slopes, then every other 16-head slope: 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5
    expected = [2.0 ** -(i + 1) for i in range(8)] + [2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5]
    assert p.alibi_slopes(12) == pytest.approx(expected)


def test_alibi_bias_is_minus_slope_times_distance():
    assert p.alibi_bias(0, 5, 2, heads=8) == pytest.approx(-1.5)
    assert p.alibi_bias(2, 1, 4, heads=8) == pytest.approx(-3 / 8)
    assert p.alibi_bias(7, 3, 3, heads=8) == 0


@pytest.mark.parametrize("rel, bucket", [
    (0, 0), (-1, 1), (-7, 7), (-8, 8), (-20, 10), (-100, 15), (-128, 15), (-1000, 15),
    (1, 17), (7, 23), (20, 26), (100, 31),
])
def test_t5_bidirectional_buckets_by_hand(rel, bucket):
    # 32 buckets -> 16 per direction, exact below 8; log buckets: 8 + int(ln(n/8)/ln(16)·8), capped at 15
    assert p.t5_bucket(rel, bidirectional=True, num_buckets=32, max_distance=128) == bucket


@pytest.mark.parametrize("rel, bucket", [(3, 0), (0, 0), (-5, 5), (-15, 15), (-20, 17), (-100, 30), (-200, 31)])
def test_t5_causal_buckets_by_hand(rel, bucket):
    # unidirectional: future keys share bucket 0; exact below 16; 16 + int(ln(n/16)/ln(8)·16), capped at 31
    assert p.t5_bucket(rel, bidirectional=False, num_buckets=32, max_distance=128) == bucket


def _t5_reference(relative_position, bidirectional, num_buckets, max_distance):
    """The reference tensor formula of T5's relative_position_bucket."""
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = max_exact + (torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return relative_buckets + torch.where(is_small, relative_position, large)


@pytest.mark.parametrize("bidirectional, buckets, max_distance", [(True, 32, 128), (False, 32, 128), (True, 64, 256), (False, 8, 20)])
def test_t5_buckets_match_the_reference_tensor_formula(bidirectional, buckets, max_distance):
    rel = torch.arange(-400, 401)
    expected = _t5_reference(rel, bidirectional, buckets, max_distance).tolist()
    assert [p.t5_bucket(r, bidirectional, buckets, max_distance) for r in range(-400, 401)] == expected


def test_rope_frequencies_are_base_to_the_minus_2i_over_d():
    assert p.rope_inv_freq(8) == pytest.approx([1.0, 0.1, 0.01, 0.001])
    assert p.rope_inv_freq(4, base=100.0) == pytest.approx([1.0, 0.1])


def test_partial_rotary_uses_the_fraction_of_head_dim():
    assert p.rotary_dim(64, 0.25) == 16
    assert p.rope_inv_freq(16, fraction=0.5) == pytest.approx([1.0, 0.1, 0.01, 0.001])


def test_ntk_scaling_keeps_the_highest_and_divides_the_lowest_frequency_by_the_factor():
    orig, ntk = p.rope_inv_freq(128), p.rope_inv_freq(128, scaling="ntk", factor=4.0)
    assert ntk[0] == orig[0] == 1.0
    assert ntk[-1] == pytest.approx(orig[-1] / 4.0)
    assert all(b < a for a, b in zip(orig[1:], ntk[1:]))


def test_yarn_keeps_fast_dims_interpolates_slow_dims_and_ramps_between():
    # head_dim 128, base 1e4, L = 2048: correction dims 128·ln(L/(β·2π))/(2 ln 1e4) = 16.13 (β=32), 40.21 (β=1)
    orig = p.rope_inv_freq(128)
    yarn = p.rope_inv_freq(128, scaling="yarn", factor=4.0, original_max_len=2048)
    assert yarn[:17] == pytest.approx(orig[:17])
    assert yarn[41:] == pytest.approx([f / 4 for f in orig[41:]])
    assert orig[28] / 4 < yarn[28] < orig[28]
    assert p.rope_attention_factor("yarn", 4.0) == pytest.approx(0.1 * math.log(4) + 1)
    assert p.rope_attention_factor("none", 4.0) == 1.0


def test_linear_scaling_divides_every_frequency_by_the_factor():
    assert p.rope_inv_freq(8, scaling="linear", factor=4.0) == pytest.approx([0.25, 0.025, 0.0025, 0.00025])


def test_llama3_keeps_short_wavelengths_divides_long_ones_and_blends_between():
    # head_dim 32, base 500, L = 64, low 1, high 4: wavelengths 2π·500^(2i/32) < 16 kept, > 64 divided by 8
    orig = p.rope_inv_freq(32, base=500.0)
    got = p.rope_inv_freq(32, base=500.0, scaling="llama3", factor=8.0, original_max_len=64)
    wavelen = [2 * math.pi / f for f in orig]
    assert [i for i, w in enumerate(wavelen) if w < 16] == [0, 1, 2] and got[:3] == orig[:3]
    assert [i for i, w in enumerate(wavelen) if w > 64] == list(range(6, 16))
    assert got[6:] == pytest.approx([f / 8 for f in orig[6:]])
    for i in (3, 4, 5):  # g = (L/λ - 1)/(4 - 1): (1 - g)·θ/8 + g·θ
        g = (64 / wavelen[i] - 1) / 3
        assert 0 < g < 1 and got[i] == pytest.approx((1 - g) * orig[i] / 8 + g * orig[i])


def test_shaw_index_clips_relative_distance():
    assert [p.shaw_index(0, kv, 2) for kv in range(6)] == [2, 3, 4, 4, 4, 4]
    assert [p.shaw_index(5, kv, 2) for kv in range(6)] == [0, 0, 0, 0, 1, 2]


def test_registry_declares_where_each_encoding_acts():
    kinds = {name: d.kind for name, d in p.POSITIONS.items()}
    assert kinds == {"rope": "qk_transform", "alibi": "score_bias", "t5_bias": "score_bias",
                     "shaw": "score_bias", "window_bias": "score_bias", "none": "input_transform"}
    assert p.POSITIONS["t5_bias"].count({"num_buckets": 32, "max_distance": 128, "bidirectional": True}, 8, 64) == 256
    assert p.POSITIONS["shaw"].count({"max_distance": 16, "values": False}, 8, 64) == 33 * 64
    assert p.POSITIONS["window_bias"].count({"window": 7, "width": None}, 3, 32) == 13 * 13 * 3  # Swin-T stage 1
    assert p.POSITIONS["window_bias"].length({"window": 2, "width": 3}) == 6


def test_parse_fills_defaults():
    assert p.parse_position("alibi") == ("alibi", {})
    name, params = p.parse_position({"type": "rope", "base": 500000})
    assert name == "rope" and params["base"] == 500000.0 and params["fraction"] == 1.0 and params["scaling"] == "none"


@pytest.mark.parametrize("value, path, words", [
    ("alibbi", "type", "did you mean 'alibi'?"),
    ("sinusoidal", "type", "position_embedding"),
    ({"type": "rope", "bse": 1}, "bse", "did you mean 'base'?"),
    ({"type": "rope", "scaling": "dynamic"}, "scaling", "expected one of none, linear, ntk, yarn, llama3"),
    ({"base": 10}, "", "needs 'type'"),
    ([1], "", "expected a position name"),
])
def test_checker_reports_problems_with_their_path(value, path, words):
    problems = p.check_position(value)
    assert problems and problems[0][0] == path and words in problems[0][1], problems


def test_generated_schema_accepts_known_forms_and_rejects_typos():
    schema = p.position_schema()
    for good in ["rope", "alibi", {"type": "rope", "base": 10000}, {"type": "t5_bias", "num_buckets": 32}]:
        jsonschema.validate(good, schema)
    for bad in ["rop", {"type": "rope", "bse": 1}, {"type": "learned"}]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


@pytest.mark.parametrize("kind, flags", [("qk_transform", {}), ("score_bias", {"learnable": True}),
                                         ("score_bias", {"query_bias": True}),
                                         ("score_bias", {"value_term": lambda params: True})])
def test_a_score_formula_is_only_for_a_score_bias_of_positions(kind, flags):
    with pytest.raises(ValueError, match="score formula is a score_bias of positions only"):
        p.register_position("formula_misuse", kind, {}, "x", score=lambda h, q_idx, kv_idx: 0.0, **flags)
    assert "formula_misuse" not in p.POSITIONS
