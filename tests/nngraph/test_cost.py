"""``nngraph cost`` without torch: visible pairs of masks against closed forms, GPT-2 small against its formulas.

Oracles: the number of visible (query, key) pairs of each mask in closed form (causal T(T+1)/2, a causal
window Σ_i min(i+1, w), ...); GPT-2 small's forward FLOPs from its published shape (L=12, d=768, V=50257:
2·T·(12·L·d² + d·V) for the products and 4·L·d·T(T+1)/2 for causal scores and values), its KV cache
2·L·d·4 bytes per token and AdamW's two fp32 moments per parameter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nngraph.attention.masks import parse_mask
from nngraph.cli import app
from nngraph.cost.rules import visible_pairs

SPECS = Path(__file__).resolve().parents[2] / "specs"
T = 37


def _window_causal(t: int, w: int) -> int:
    return sum(min(i + 1, w) for i in range(t))


def _window_symmetric(t: int, r: int) -> int:
    return sum(min(i + r, t - 1) - max(i - r, 0) + 1 for i in range(t))


CASES = [
    ("none", T * T),
    ("causal", T * (T + 1) // 2),
    ({"type": "sliding_window", "window": 5}, _window_causal(T, 5)),
    ({"type": "sliding_window", "window": 8, "causal": False}, _window_symmetric(T, 4)),
    ({"type": "prefix_lm", "prefix": 6}, sum(max(i + 1, 6) for i in range(T))),
    # global rows see every key, global columns are seen by every query; the window adds the rest
    ({"any": [{"type": "sliding_window", "window": 4, "causal": False}, {"type": "global_tokens", "positions": [0]}]},
     _window_symmetric(T, 2) + 2 * (T - 3)),  # row 0's window already holds keys 0..2, column 0's rows 0..2
    ({"type": "dilated", "window": 3, "dilation": 2}, sum(min(i // 2 + 1, 3) for i in range(T))),
    # data-dependent masks (key padding) count as all-visible: the most the node can execute
    ({"all": ["causal", {"type": "key_padding"}]}, T * (T + 1) // 2),
]


@pytest.mark.parametrize("mask,expected", CASES, ids=[json.dumps(c[0])[:40] for c in CASES])
def test_visible_pairs_match_closed_forms(mask, expected):
    assert visible_pairs(parse_mask(mask), T, T) == expected


def _cost(*args: str) -> dict:
    result = CliRunner().invoke(app, ["cost", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_gpt2_small_costs_match_its_published_shape():
    L, d, V, t = 12, 768, 50257, 1024
    rep = _cost(str(SPECS / "gpt2_small.yaml"), "--dim", "seq=1024", "--mode", "training")
    tot = rep["totals"]
    assert tot["params"] == 124_439_808
    assert tot["flops_forward"] == 2 * t * (12 * L * d * d + d * V) + 4 * L * d * t * (t + 1) // 2
    assert tot["flops_backward"] == 2 * tot["flops_forward"]
    assert tot["kv_cache_bytes_per_token"] == 2 * L * d * 4
    assert tot["optimizer_state_bytes"] == 2 * 4 * 124_439_808
    assert tot["param_bytes"] == {"float32": 4 * 124_439_808}
    attn = next(n for n in rep["nodes"] if n["name"] == "h.0.attn")
    assert attn["pairs_visible"] == t * (t + 1) // 2 and attn["dense_flops"] > attn["flops"]
    block = next(b for b in rep["blocks"] if b["name"] == "h")
    assert block["repeat"] == 12 and block["params"] == 12 * 7_087_872


def test_cost_with_a_target_gives_time_and_the_kernel_per_attention_node():
    rep = _cost(str(SPECS / "gpt2_small.yaml"), "--dim", "seq=256", "--target", "cpu")
    attn = next(n for n in rep["nodes"] if n["op"] == "attention")
    assert attn["kernel"] == "sdpa" and attn["why"]
    assert rep["totals"]["ms"] == pytest.approx(sum(n["ms"] for n in rep["nodes"]))
    assert "measured" in rep["target"]["roofline"]["source"]


def test_backward_skips_the_input_gradient_of_a_layer_that_reads_data():
    # mlp.yaml 784 -> 256 -> 256 -> 10: the first linear reads x (data: dW only); the others also need dX
    rep = _cost(str(SPECS / "mlp.yaml"), "--batch", "4", "--mode", "training")
    first, rest = 2 * 4 * 784 * 256, 2 * 4 * (256 * 256 + 256 * 10)
    assert rep["totals"]["flops_forward"] == first + rest
    assert rep["totals"]["flops_backward"] == first + 2 * rest


def test_backward_of_an_lstm_skips_the_state_gradient_of_its_first_step():
    # char_lstm: embed 64 -> LSTM(256, 2 layers) -> linear 128; no h0: step 1's W_hh·h0 multiplies zeros (data)
    b, t, e, h, v = 2, 16, 64, 256, 128
    rep = _cost(str(SPECS / "char_lstm.yaml"), "--batch", str(b), "--dim", f"seq={t}", "--mode", "training")
    lstm = 2 * b * 4 * h * t * ((e + h) + (h + h))
    assert rep["totals"]["flops_forward"] == lstm + 2 * b * t * h * v
    assert rep["totals"]["flops_backward"] == 2 * lstm - 2 * (2 * b * 4 * h * h) + 2 * (2 * b * t * h * v)


def test_an_lstm_reads_its_recurrent_weights_again_at_every_step():
    # char_lstm, batch 2, seq 64: x [2,64,64], h0 and c0 [2,2,256] in (the spec wires its optional state inputs);
    # out [2,64,256], h and c [2,2,256] out; 856,064 params read once;
    # then W_hh [4·256, 256] of both layers read again at steps 2..64, so the batch-2 recurrence is memory-bound
    b, t, e, h, layers = 2, 64, 64, 256, 2
    rep = _cost(str(SPECS / "char_lstm.yaml"), "--batch", str(b), "--dim", f"seq={t}", "--target", "cpu")
    lstm = next(n for n in rep["nodes"] if n["name"] == "lstm")
    once = 4 * (b * t * e + 2 * layers * b * h + b * t * h + 2 * layers * b * h + 856_064)
    assert lstm["io_bytes"] == once + 4 * layers * (t - 1) * 4 * h * h
    assert lstm["flops"] / lstm["io_bytes"] < 2  # 2·B FLOPs per 4-byte weight, far below any CPU's ridge


def test_inference_peak_live_counts_the_widest_point_of_an_mlp():
    # mlp.yaml: x [batch, 784] -> 256 -> 10 (float32): peak = input + the two widest values alive together
    rep = _cost(str(SPECS / "mlp.yaml"), "--batch", "4")
    sizes = {n["name"]: n["out_bytes"] for n in rep["nodes"]}
    assert rep["totals"]["peak_live_bytes"] >= 4 * 784 * 4 + max(sizes.values())
    assert rep["totals"]["peak_live_bytes"] <= 4 * 784 * 4 + sum(sizes.values())


def test_a_bad_dim_is_a_usage_error():
    result = CliRunner().invoke(app, ["cost", str(SPECS / "mlp.yaml"), "--dim", "batch=x"])
    assert result.exit_code == 2 and "NAME=INT" in result.output


def _with_expect(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "mlp.yaml"
    path.write_text((SPECS / "mlp.yaml").read_text() + line + "\n")
    return path


def test_expect_params_mismatch_is_a_located_error(tmp_path):
    from nngraph.spec import check_spec

    path = _with_expect(tmp_path, "expect:\n  params: 269323")
    line = len((SPECS / "mlp.yaml").read_text().splitlines()) + 2
    _, diag = check_spec(path)
    errors = [d for d in diag if d.severity == "error"]
    assert len(errors) == 1 and "expected 269,323 parameters, the graph has 269,322" in errors[0].message
    assert (errors[0].pos.line, errors[0].pos.col) == (line, 11)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1 and f"mlp.yaml:{line}:11" in result.output and "Traceback" not in result.output


def test_expect_flops_per_token_and_activation_bound(tmp_path):
    from nngraph.spec import check_spec

    # gpt2_small states its published count and 2·(12·L·d² + d·V) + 2·L·d·(T+1) FLOPs per token at T = 1024
    _, diag = check_spec(SPECS / "gpt2_small.yaml")
    assert not [d for d in diag if d.severity == "error"]
    # mlp: 2·(784·256 + 256·256 + 256·10) FLOPs per row; x is float, so there are no tokens
    path = _with_expect(tmp_path, "expect: {flops_per_token: 1000, max_activation_mb: 0.001, at: {batch: 64}}")
    _, diag = check_spec(path)
    text = [d.message for d in diag if d.severity == "error"]
    assert any("no [batch, seq] integer token input" in t for t in text)
    # activations at batch 64: (256 + 256 + 256 + 256 + 10) floats per row = 64·1034·4 bytes
    assert any(f"{64 * 1034 * 4 / 2 ** 20:,.1f} MiB, over the expected 0.001 MiB" in t for t in text)


def test_expect_unknown_key_and_overrides(tmp_path):
    from nngraph.spec import check_spec

    path = _with_expect(tmp_path, "expect: {parameters: 5}")
    _, diag = check_spec(path)
    assert any("unknown expect key 'parameters'" in d.message for d in diag)
    path = _with_expect(tmp_path, "expect: {params: 269322}")
    _, diag = check_spec(path, ["hidden=8"])  # another model than the published one: not checked
    assert not [d for d in diag if d.severity == "error"]
