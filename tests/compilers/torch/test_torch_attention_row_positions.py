"""Per-row position ids (the attention ``positions`` input): a left-padded batch of HF LlamaForCausalLM given
explicit position_ids gives the same logits; ALiBi, T5 buckets and Shaw read pos_k - pos_q per row (checked
against the scalar formulas in float64); a KV cache fed the new tokens' ids equals one full call; the SDPA
kernel equals the reference; kernels that derive biases from indices only refuse the node."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nngraph.attention.positions import alibi_slopes, shaw_index, t5_bucket
from nngraph.compilers.torch.ops.attention_cache import KVCache

SPECS = Path(__file__).resolve().parents[3] / "specs"
D, H = 16, 2
B, T = 3, 7
PAD = torch.tensor([0, 2, 4])  # left padding per row
KP = torch.arange(T)[None] < PAD[:, None]  # True = padding
IDS = (torch.arange(T)[None] - PAD[:, None]).clamp(min=0)  # HF: cumsum(attention_mask) - 1, pads at 0
# packed rows restart their ids per document (relative terms see the restarts; a uniform shift they cannot see)
PACKED = torch.tensor([[0, 1, 2, 0, 1, 2, 3], [0, 1, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11]])


def _node(position: str, extra: str = "") -> str:
    return (f"{{name: n, op: attention, in: {{x: x, key_padding: kp, positions: pos}}, heads: {H}, "
            f"mask: {{all: [causal, key_padding]}}, position: {position}{extra}}}")


INPUTS = f"""x: {{shape: [batch, seq, {D}], dtype: float32}}
kp: {{shape: [batch, seq], dtype: bool}}
pos: {{shape: [batch, seq], dtype: int64}}"""


def _formula_bias(position: str, params: dict, m, q: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """B[b, h, i, j] from the front end's scalar formulas at the rows' own ids (float64)."""
    out = torch.zeros(B, H, T, T, dtype=torch.float64)
    for b in range(B):
        for i in range(T):
            for j in range(T):
                pi, pj = int(ids[b, i]), int(ids[b, j])
                for h in range(H):
                    if position == "alibi":
                        out[b, h, i, j] = -alibi_slopes(H)[h] * abs(pi - pj)
                    elif position == "t5_bias":
                        out[b, h, i, j] = m.rel_bias.weight[t5_bucket(pj - pi, True, 8, 16), h]
                    else:
                        out[b, h, i, j] = q[b, h, i] @ m.rel_k[shaw_index(pi, pj, 3)] * m.scale
    return out


@pytest.mark.parametrize("position, params, extra", [
    ("alibi", {}, ""), ("t5_bias", {}, "{type: t5_bias, num_buckets: 8, max_distance: 16}"),
    ("shaw", {}, "{type: shaw, max_distance: 3}")])
def test_relative_biases_read_the_rows_position_ids(run_op, position, params, extra):
    model, _ = run_op(_node(extra or position), inputs=INPUTS)
    model = model.double()
    m = model.n
    with torch.no_grad():
        for p in m.parameters():  # non-trivial tables
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
    x = torch.randn(B, T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(x, KP, PACKED)
        q, k, v = m.project(x)
        scores = q @ k.transpose(-1, -2) * m.scale + _formula_bias(position, params, m, q, PACKED)
        visible = (~KP)[:, None, None, :] & torch.ones(T, T, dtype=torch.bool).tril()
        scores = scores.masked_fill(~visible, torch.finfo(torch.float64).min)
        want = m.out(m.merge_heads(torch.softmax(scores, -1) @ v))
        assert (got - want).abs().max().item() <= 1e-12
        shifted = model(x, KP, torch.arange(T).expand(B, T))  # the ids matter: 0..T-1 gives another answer
        assert (shifted - want).abs().max().item() > 1e-4


@pytest.mark.parametrize("position", ["rope", "alibi", "t5_bias"])
def test_kv_cache_with_new_tokens_ids_equals_one_full_call(run_op, position):
    model, _ = run_op(_node(position), inputs=INPUTS)
    model.eval()
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x, KP, IDS)
        with KVCache().attach(model):
            first = model(x[:, :4], KP[:, :4], IDS[:, :4])
            rest = [model(x[:, t:t + 1], KP[:, :t + 1], IDS[:, t:t + 1]) for t in range(4, T)]
    # key_padding grows with the cache; valid rows only (row 2's first 4 queries are all padding)
    got = torch.cat([first] + rest, dim=1)
    valid = ~KP
    assert (got - full)[valid].abs().max().item() <= 1e-5


def test_sdpa_kernel_with_row_ids_equals_the_reference(run_op):
    from nngraph.compilers.torch.ops.attention_kernels import LoweredAttention

    model, _ = run_op(_node("alibi"), inputs=INPUTS)
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = model(x, KP, IDS)
        LoweredAttention.from_reference(model.n, {"tiers": [{"kernel": "sdpa", "variant": "bias", "backends": [],
                                                             "min_kv": 0, "backward": True}]})
        got = model(x, KP, IDS)
    assert model.n.last_kernel == "sdpa" and (got - want).abs().max().item() <= 1e-5


def test_index_only_kernels_refuse_a_row_bias_but_not_rope(spec_text, spec_file):
    from nngraph import load_spec
    from nngraph.compilers.kernels.conditions import row_bias_unserved
    from nngraph.compilers.passes.facts import attention_facts

    for position, refused in (("alibi", True), ("rope", False)):
        graph = load_spec(spec_file(spec_text(_node(position), inputs=INPUTS)), [])
        facts = attention_facts(graph, graph.nodes["n"])
        why = row_bias_unserved(facts, "score_mod")
        assert bool(why) == refused and (not why or "per-row position ids" in why)


def test_left_padded_llama_with_position_ids_matches_llama_for_causal_lm(spec_file):
    transformers = pytest.importorskip("transformers")
    from nngraph import load_spec
    from nngraph.compilers.torch.hf_import import import_weights

    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=256, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
                                   tie_word_embeddings=False, attn_implementation="eager")
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    text = (SPECS / "llama_style.yaml").read_text()
    text = text.replace("  tokens: {shape: [batch, seq], dtype: int64}\n",
                        "  tokens: {shape: [batch, seq], dtype: int64}\n  kp: {shape: [batch, seq], dtype: bool}\n"
                        "  pos: {shape: [batch, seq], dtype: int64}\n")
    text = text.replace("inputs: [x]", "inputs: [x, kp, pos]").replace(
        "in: input_layernorm, heads", "in: {x: input_layernorm, key_padding: kp, positions: pos}, heads").replace(
        "mask: causal", "mask: {all: [causal, key_padding]}").replace(
        "block: decoder_layer, repeat: \"${layers}\", in: embed_tokens", "block: decoder_layer, repeat: \"${layers}\", "
        "in: [embed_tokens, kp, pos]")
    graph = load_spec(spec_file(text), ["vocab=64", "d_model=32", "layers=2", "heads=4", "kv_heads=2"])
    model = import_weights(graph, "hf-llama", hf.state_dict())
    ids = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(5))
    none = torch.zeros(B, T, dtype=torch.bool)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=(~KP).long(), position_ids=IDS).logits
        got = model(ids, KP, IDS)
        packed_want = hf(input_ids=ids, position_ids=PACKED).logits  # ids restart mid-row (HF eager: causal only)
        packed = model(ids, none, PACKED)
        plain = model(ids, none, torch.arange(T).expand(B, T))
    valid = ~KP
    assert (got - want)[valid].abs().max().item() <= 1e-5
    assert (packed - packed_want).abs().max().item() <= 1e-5
    assert (plain - packed_want).abs().max().item() > 1e-3  # the ids reach the rotation
