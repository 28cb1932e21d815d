"""`import-weights` onto the decoder-family zoo specs (specs/gemma_style.yaml, mistral_style.yaml, qwen2_style.yaml,
gpt_neox_style.yaml): Mistral's sliding window is exact and matters, GPT-NeoX's per-head fused q|k|v rows split onto
q, k, v, an untied head on a tied spec is refused. Their logits against GemmaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM and GPTNeoXForCausalLM from small configs with random weights (<= 1e-5 on right-padded batches)
are asserted in test_torch_import_hf.py, which builds the same specs from the configs' save_pretrained folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nngraph.compilers.torch.hf_import import ImportWeightsError, import_weights

transformers = pytest.importorskip("transformers")

SPECS = Path(__file__).resolve().parents[3] / "specs"
V, T, REAL = 96, 13, 9  # vocab, padded length, real tokens of the second row
IDS = dict(pad_token_id=0, bos_token_id=0, eos_token_id=0)

FAMILIES = {  # spec, source, --set, HF class, config
    "gemma": ("gemma_style", "hf-gemma", "d_model=32 heads=4 kv_heads=1 head_dim=16 ffn=64 layers=2",
              "GemmaForCausalLM", lambda: transformers.GemmaConfig(
                  vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-6, **IDS)),
    "mistral": ("mistral_style", "hf-mistral", "d_model=32 heads=4 kv_heads=2 ffn=64 layers=2 window=4",
                "MistralForCausalLM", lambda: transformers.MistralConfig(
                    vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, sliding_window=4, rms_norm_eps=1e-5, tie_word_embeddings=False, **IDS)),
    "qwen2": ("qwen2_style", "hf-qwen2", "d_model=32 heads=4 kv_heads=2 ffn=64 layers=2",
              "Qwen2ForCausalLM", lambda: transformers.Qwen2Config(
                  vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True, **IDS)),
    "gpt-neox": ("gpt_neox_style", "hf-gpt-neox", "d_model=32 heads=4 ffn=64 layers=2 rotary_fraction=0.5",
                 "GPTNeoXForCausalLM", lambda: transformers.GPTNeoXConfig(
                     vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     rotary_pct=0.5, hidden_dropout=0.0, attention_dropout=0.0, tie_word_embeddings=False, **IDS)),
}


def _hf(family: str):
    """The HF model of a family from its small config, norms and biases moved off HF's 1 and 0."""
    torch.manual_seed(0)
    model = getattr(transformers, FAMILIES[family][3])(FAMILIES[family][4]()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


def _import(family: str, state: dict, extra: tuple[str, ...] = ()):
    spec, source, sets, _, _ = FAMILIES[family]
    return import_weights(SPECS / f"{spec}.yaml", source, state, [f"vocab={V}", *sets.split(), *extra])


def _batch() -> torch.Tensor:
    return torch.randint(1, V, (2, T), generator=torch.Generator().manual_seed(1))


def test_the_sliding_window_matters_at_this_length():
    hf = _hf("mistral")
    ids = _batch()
    with torch.no_grad():
        assert (_import("mistral", hf.state_dict())(ids) - hf(input_ids=ids).logits).abs().max().item() <= 1e-5
        # the same weights with a window longer than the sequence: other logits
        full = _import("mistral", hf.state_dict(), ("window=64",))(ids)
        assert (full - hf(input_ids=ids).logits).abs().max().item() > 1e-3


def test_gpt_neox_fused_qkv_rows_are_split_per_head():
    hf = _hf("gpt-neox")
    model = _import("gpt-neox", hf.state_dict())
    fused = hf.state_dict()["gpt_neox.layers.1.attention.query_key_value.weight"]  # rows [head, q|k|v, head_dim]
    per_head = fused.view(4, 3, 8, 32)
    attn = model.layers[1].attention
    for i, proj in enumerate((attn.q, attn.k, attn.v)):
        assert torch.equal(proj.weight, per_head[:, i].reshape(32, 32))


def test_an_untied_head_on_a_tied_spec_is_refused_with_a_note():
    hf = _hf("qwen2")
    state = dict(hf.state_dict())
    state["lm_head.weight"] = state["lm_head.weight"].clone() + 1.0
    with pytest.raises(ImportWeightsError, match="lm_head.weight differs from embed_tokens") as err:
        _import("qwen2", state)
    assert err.value.unexpected == ["lm_head.weight"] and not err.value.missing
