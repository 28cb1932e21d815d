"""Decoder-family zoo specs (Gemma, Mistral, Qwen2, GPT-NeoX) at their published sizes: the front end's parameter
count equals the published total and the count of the Hugging Face model built on the meta device (shapes only, no
memory) from the published config. Published totals: Gemma-2B 2,506,172,416; Mistral-7B-v0.1 7,241,732,096;
Qwen2-0.5B 494,032,768; Qwen2-1.5B 1,543,714,304; Pythia-70M 70,426,624; Pythia-160M 162,322,944."""

from __future__ import annotations

import pytest
import torch

from _zoo import load_clean as load
from nngraph.limits import Limits

transformers = pytest.importorskip("transformers")


def _hf_sizes(vocab: int, d: int, heads: int, layers: int, ffn: int, **extra) -> dict:
    """A published config's sizes in HF's names (kv heads, head_dim, window, tying go in ``extra``)."""
    return dict(vocab_size=vocab, hidden_size=d, num_attention_heads=heads, num_hidden_layers=layers,
                intermediate_size=ffn, **extra)


CASES = {  # (spec, --set, HF config class, config kwargs, HF model class, published count)
    "gemma-2b": ("gemma_style", "vocab=256000 d_model=2048 heads=8 kv_heads=1 head_dim=256 ffn=16384 layers=18",
                 "GemmaConfig", _hf_sizes(256000, 2048, 8, 18, 16384, num_key_value_heads=1, head_dim=256),
                 "GemmaForCausalLM", 2_506_172_416),
    "mistral-7b": ("mistral_style", "vocab=32000 d_model=4096 heads=32 kv_heads=8 ffn=14336 layers=32 window=4096",
                   "MistralConfig", _hf_sizes(32000, 4096, 32, 32, 14336, num_key_value_heads=8, sliding_window=4096,
                                              tie_word_embeddings=False), "MistralForCausalLM", 7_241_732_096),
    "qwen2-0.5b": ("qwen2_style", "vocab=151936 d_model=896 heads=14 kv_heads=2 ffn=4864 layers=24", "Qwen2Config",
                   _hf_sizes(151936, 896, 14, 24, 4864, num_key_value_heads=2, tie_word_embeddings=True),
                   "Qwen2ForCausalLM", 494_032_768),
    "qwen2-1.5b": ("qwen2_style", "vocab=151936 d_model=1536 heads=12 kv_heads=2 ffn=8960 layers=28", "Qwen2Config",
                   _hf_sizes(151936, 1536, 12, 28, 8960, num_key_value_heads=2, tie_word_embeddings=True),
                   "Qwen2ForCausalLM", 1_543_714_304),
    "pythia-70m": ("gpt_neox_style", "vocab=50304 d_model=512 heads=8 ffn=2048 layers=6", "GPTNeoXConfig",
                   _hf_sizes(50304, 512, 8, 6, 2048, rotary_pct=0.25, tie_word_embeddings=False),
                   "GPTNeoXForCausalLM", 70_426_624),
    "pythia-160m": ("gpt_neox_style", "vocab=50304 d_model=768 heads=12 ffn=3072 layers=12", "GPTNeoXConfig",
                    _hf_sizes(50304, 768, 12, 12, 3072, rotary_pct=0.25, tie_word_embeddings=False),
                    "GPTNeoXForCausalLM", 162_322_944),
}


@pytest.mark.parametrize("case", CASES)
def test_published_sizes_give_the_published_count_and_the_hf_models_count(case):
    spec, sets, config_cls, kwargs, model_cls, published = CASES[case]
    graph = load(spec, sets.split(), Limits(max_params=10**11, max_memory=0))  # counted, never allocated
    with torch.device("meta"):
        hf = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs))
    assert graph.total_params == sum(p.numel() for p in hf.parameters()) == published


def test_each_family_uses_its_own_features():
    gemma = load("gemma_style")
    assert gemma.nodes["layers.0.input_layernorm"].params["offset"] == 1.0
    assert gemma.nodes["layers.0.mlp"].params["activation"] == "gelu_tanh"
    assert gemma.nodes["embed_scale"].params["factor"] == pytest.approx(128 ** 0.5)
    assert gemma.nodes["lm_head"].n_params == 0  # tied to embed_tokens
    mask = load("mistral_style").nodes["layers.1.self_attn"].params["mask"]
    assert mask == {"type": "sliding_window", "window": 64}  # causal (the default): Mistral looks back only
    qwen = load("qwen2_style").nodes["layers.0.self_attn"]
    assert qwen.params["bias"] is True and qwen.params["out_bias"] is False
    assert qwen.n_params == 128 * 128 + 128 + 2 * (128 * 64 + 64) + 128 * 128  # q, k, v with biases; out without
    neox = load("gpt_neox_style")
    assert neox.nodes["layers.0.attention"].params["position"]["fraction"] == 0.25
    assert [r.node for r in neox.nodes["layers.0.out"].variadic] == [
        "embed_in", "layers.0.attention", "layers.0.mlp"]  # the parallel residual: both branches read x
    assert neox.nodes["layers.0.post_attention_layernorm"].inputs["x"].node == "embed_in"
