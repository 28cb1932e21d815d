"""Transformer zoo specs: parameter counts against published totals and against equivalent models
built here with torch.nn (on the meta device: shapes only, no memory), plus their key shapes.

Published totals: GPT-2 small 124,439,808 (HF "gpt2"); BERT-base BertForMaskedLM 109,514,298;
ViT-B/16 86,567,656 (timm vit_base_patch16_224); T5-small 60,506,624 (HF "t5-small").
"""

from __future__ import annotations


import pytest
import torch
from torch import nn

from _zoo import SPECS, count, load_clean as load, meta_device  # noqa: F401 - fixture


@pytest.fixture(autouse=True)
def _on_meta(meta_device):
    yield


def pre_ln_layer(d: int, heads: int, ffn: int) -> nn.ModuleList:
    """LayerNorm, MultiheadAttention (fused in-projection with biases), LayerNorm, Linear-GELU-Linear."""
    return nn.ModuleList([nn.LayerNorm(d), nn.MultiheadAttention(d, heads), nn.LayerNorm(d),
                          nn.Linear(d, ffn), nn.Linear(ffn, d)])


def test_gpt2_small_has_exactly_124_439_808_parameters():
    graph = load("gpt2_small")
    assert graph.total_params == 124_439_808
    torch_gpt2 = nn.ModuleList([nn.Embedding(50257, 768), nn.Embedding(1024, 768), nn.LayerNorm(768),
                                *[pre_ln_layer(768, 12, 3072) for _ in range(12)]])  # head tied to wte
    assert count(torch_gpt2) == 124_439_808
    assert graph.nodes["lm_head"].n_params == 0 and graph.nodes["lm_head"].out.shape == ("batch", "seq", 50257)
    attn = graph.nodes["h.11.attn"]
    assert attn.params["qkv"] == "fused" and attn.params["mask"] == "causal" and attn.n_params == 2_362_368


def test_llama_style_matches_a_torch_gqa_swiglu_stack():
    graph = load("llama_style")
    d, heads, kv, hidden, vocab, layers = 512, 8, 2, 1536, 32000, 8
    hd = d // heads

    def layer() -> nn.ModuleList:
        return nn.ModuleList([
            nn.RMSNorm(d), nn.Linear(d, heads * hd, bias=False), nn.Linear(d, kv * hd, bias=False),
            nn.Linear(d, kv * hd, bias=False), nn.Linear(heads * hd, d, bias=False), nn.RMSNorm(d),
            nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False), nn.Linear(hidden, d, bias=False)])

    model = nn.ModuleList([nn.Embedding(vocab, d), *[layer() for _ in range(layers)], nn.RMSNorm(d),
                           nn.Linear(d, vocab, bias=False)])
    assert graph.total_params == count(model) == 56_893_952
    attn = graph.nodes["layers.0.self_attn"]
    assert attn.params["kv_heads"] == 2 and attn.params["position"]["type"] == "rope"
    assert attn.params["bias"] is False and attn.params["out_bias"] is False
    assert graph.nodes["layers.0.mlp"].params["hidden"] == 1536  # 256·ceil(⌊8·512/3⌋/256)


def test_bert_encoder_matches_bert_base_masked_lm():
    graph = load("bert_encoder")
    d = 768

    def post_ln_layer() -> nn.ModuleList:
        return nn.ModuleList([nn.MultiheadAttention(d, 12), nn.LayerNorm(d), nn.Linear(d, 3072),
                              nn.Linear(3072, d), nn.LayerNorm(d)])

    model = nn.ModuleList([nn.Embedding(30522, d), nn.Embedding(512, d), nn.Embedding(2, d), nn.LayerNorm(d),
                           *[post_ln_layer() for _ in range(12)],
                           nn.Linear(d, d), nn.LayerNorm(d)])  # MLM transform; decoder weight tied
    decoder_bias = nn.Parameter(torch.empty(30522))
    assert graph.total_params == count(model, decoder_bias) == 109_514_298
    attn = graph.nodes["encoder.0.attention"]
    assert attn.params["mask"] == "key_padding" and attn.inputs["lengths"].node == "lengths"
    assert graph.nodes["mlm_decoder"].out.shape == ("batch", "seq", 30522)


def test_t5_encoder_decoder_matches_a_torch_build_and_t5_small_up_to_the_documented_differences():
    graph = load("t5_encoder_decoder")
    d, heads, ff, vocab, buckets = 512, 8, 2048, 32128, 32

    def ffn() -> list[nn.Module]:
        return [nn.RMSNorm(d), nn.Linear(d, ff, bias=False), nn.Linear(ff, d, bias=False)]

    def enc() -> nn.ModuleList:
        return nn.ModuleList([nn.RMSNorm(d), nn.MultiheadAttention(d, heads, bias=False), *ffn()])

    def dec() -> nn.ModuleList:
        return nn.ModuleList([nn.RMSNorm(d), nn.MultiheadAttention(d, heads, bias=False),
                              nn.RMSNorm(d), nn.MultiheadAttention(d, heads, bias=False), *ffn()])

    tables = [nn.Embedding(buckets, heads), nn.Embedding(buckets, heads)]  # one per stack (position_from)
    model = nn.ModuleList([nn.Embedding(vocab, d), *[enc() for _ in range(6)], nn.RMSNorm(d),
                           nn.Embedding(vocab, d), *[dec() for _ in range(6)], nn.RMSNorm(d), *tables])  # head tied
    assert graph.total_params == count(model)
    # T5-small also shares one embedding between encoder, decoder and head
    assert graph.total_params - vocab * d == 60_506_624
    users = [graph.nodes[f"{s}.{i}.self_attn"].params["position_from"] for s in ("encoder", "decoder") for i in range(6)]
    assert users == ["encoder.0.self_attn"] * 6 + ["decoder.0.self_attn"] * 6
    cross = graph.nodes["decoder.5.cross_attn"]
    assert cross.inputs["context"].node == "encoder_norm" and cross.params["position"] == "none"
    assert graph.nodes["decoder.0.self_attn"].params["position"]["bidirectional"] is False
    assert graph.nodes["encoder.0.self_attn"].params["scale"] == 1.0
    assert graph.nodes["lm_head"].out.shape == ("batch", "tgt", vocab)


def test_longformer_matches_a_torch_build_and_uses_window_plus_global_mask():
    graph = load("longformer")
    d = 512

    def layer() -> nn.ModuleList:
        return nn.ModuleList([nn.MultiheadAttention(d, 8), nn.LayerNorm(d), nn.Linear(d, 2048), nn.Linear(2048, d),
                              nn.LayerNorm(d)])

    model = nn.ModuleList([nn.Embedding(50265, d), nn.Embedding(4096, d), nn.LayerNorm(d),
                           *[layer() for _ in range(6)], nn.Linear(d, d), nn.Linear(d, 2)])
    assert graph.total_params == count(model)
    mask = graph.nodes["encoder.3.attention"].params["mask"]
    assert mask["all"][0] == "key_padding"
    assert mask["all"][1]["any"] == [{"type": "sliding_window", "window": 512, "causal": False},
                                     {"type": "global_tokens", "positions": [0]}]
    assert graph.nodes["head_out"].out.shape == ("batch", 2)


def test_vit_b16_has_86_567_656_parameters():
    graph = load("vit")
    model = nn.ModuleList([nn.Conv2d(3, 768, 16, 16), *[pre_ln_layer(768, 12, 3072) for _ in range(12)],
                           nn.LayerNorm(768), nn.Linear(768, 1000)])
    cls, pos = nn.Parameter(torch.empty(1, 1, 768)), nn.Parameter(torch.empty(1, 197, 768))
    assert graph.total_params == count(model, cls, pos) == 86_567_656
    assert graph.nodes["pos_embed"].out.shape == ("batch", 197, 768)
    assert graph.nodes["head"].out.shape == ("batch", 1000)
