"""KV cache and greedy generation: decoding token by token with the cache gives the logits of the full
sequence (<= 1e-5) and the same greedy tokens as re-running without it (GPT-2 and LLaMA zoo specs, ALiBi,
T5 and Shaw biases, sinusoidal positions, an encoder-decoder with a decoder-only cache)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nngraph.compilers.torch import compile_spec
from nngraph.compilers.torch.ops.attention_cache import BufferSlot, KVCache, generate
from nngraph.compilers.torch.ops.attention_masks import mask_tensor

SPECS = Path(__file__).resolve().parents[3] / "specs"
TINY = {
    "gpt2_small": ["layers=2", "vocab=40", "d_model=32", "heads=4", "ctx=48"],
    "llama_style": ["layers=2", "vocab=40", "d_model=32", "heads=4", "kv_heads=2"],
}


def _incremental(model, seq: torch.Tensor, prompt: int, chunk: int = 1, **inputs) -> torch.Tensor:
    with KVCache().attach(model) as cache:
        outs = [model(seq[:, :prompt], **inputs)]
        for i in range(prompt, seq.shape[1], chunk):
            outs.append(model(seq[:, i:i + chunk], **inputs))
        assert cache.length == seq.shape[1]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("spec", list(TINY))
def test_zoo_decoder_generates_the_same_tokens_and_logits_with_the_cache(spec):
    model = compile_spec(SPECS / f"{spec}.yaml", TINY[spec], seed=3).eval()
    prompt = torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(0))
    cached = generate(model, prompt, 16, use_cache=True)
    assert torch.equal(cached, generate(model, prompt, 16, use_cache=False))
    assert cached.shape == (2, 21) and torch.equal(cached[:, :5], prompt)
    with torch.no_grad():
        full = model(cached)
        assert (_incremental(model, cached, 5) - full).abs().max() <= 1e-5
        assert (_incremental(model, cached, 3, chunk=4) - full).abs().max() <= 1e-5
        assert torch.equal(model(cached), full)  # detached: the cache is gone


@pytest.mark.parametrize("position", ["alibi", "{type: t5_bias, num_buckets: 8, max_distance: 16, bidirectional: false}",
                                      "{type: shaw, max_distance: 3, values: true}",
                                      "{type: rope, fraction: 0.5, scaling: ntk, factor: 2.0}"])
def test_cached_decoding_keeps_relative_positions(compile_text, position):
    _, model = compile_text(f"""
        nngraph: 1
        name: t
        inputs:
          tokens: {{shape: [batch, seq], dtype: int64}}
        graph:
          - {{name: embed, op: embedding, in: tokens, num: 30, dim: 16}}
          - {{name: pos, op: position_embedding, in: embed, type: sinusoidal}}
          - {{name: attn, op: attention, in: pos, heads: 2, mask: causal, position: {position}}}
          - {{name: attn2, op: attention, in: attn, heads: 2, kv_heads: 1, mask: {{type: sliding_window, window: 3}}}}
          - {{name: head, op: linear, in: attn2, out: 30}}
        outputs: [head]
        """)
    model.eval()
    seq = torch.randint(0, 30, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (_incremental(model, seq, 4) - model(seq)).abs().max() <= 1e-5


def test_encoder_decoder_caches_only_the_decoder(compile_text):
    spec = SPECS / "t5_encoder_decoder.yaml"
    model = compile_spec(spec, ["layers=2", "vocab=40", "d_model=32", "heads=4", "d_kv=8", "d_ff=64"]).eval()
    src = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([7, 4])
    start = torch.zeros(2, 1, dtype=torch.long)
    kw = dict(input_name="tgt_tokens", src_tokens=src, src_lengths=lengths)
    cached = generate(model, start, 8, include=["decoder"], **kw)
    assert torch.equal(cached, generate(model, start, 8, use_cache=False, **kw))
    with torch.no_grad(), KVCache().attach(model, include=["decoder"]) as cache:
        steps = [model(src, lengths, cached[:, i:i + 1]) for i in range(cached.shape[1])]
        assert set(cache.slots) == {f"decoder.{i}.{a}" for i in range(2) for a in ("self_attn", "cross_attn")}
    assert (torch.cat(steps, dim=1) - model(src, lengths, cached)).abs().max() <= 1e-5


def test_models_with_efficient_attention_refuse_a_cache(compile_text):
    _, model = compile_text("""
        nngraph: 1
        name: t
        inputs:
          x: {shape: [batch, seq, 8], dtype: float32}
        graph:
          - {name: lin, op: linear_attention, in: x, heads: 2, causal: true}
        outputs: [lin]
        """)
    with pytest.raises(ValueError, match="module 'lin' \\(LinearAttention\\) has no KV cache"):
        with KVCache().attach(model):
            pass


def test_buffered_slot_writes_in_place_and_equals_concatenation():
    """The decoder's slot keeps keys in a buffer that doubles when full (64, then 2 * needed) and returns views of
    it: the same keys as concatenating every chunk; with gradients on it concatenates (autograd keeps its inputs)."""
    chunks = [torch.randn(2, 3, n, 4) for n in (5, 1, 60, 1, 90, 1)]
    slot = BufferSlot()
    with torch.no_grad():
        for i, c in enumerate(chunks):
            k, v = slot.append(c, -c)
            want = torch.cat(chunks[:i + 1], dim=-2)
            assert torch.equal(k, want) and torch.equal(v, -want) and slot.length == want.shape[-2]
    assert slot.buffers[0].shape[-2] == 2 * 157 and k.data_ptr() == slot.buffers[0].data_ptr()
    grad = BufferSlot()
    x = torch.randn(1, 1, 2, 4, requires_grad=True)
    k, _ = grad.append(x, x)
    k, _ = grad.append(x * 2, x)
    k.sum().backward()
    assert grad.buffers is None and torch.equal(x.grad, torch.full_like(x, 3.0))


def test_one_query_at_the_end_needs_no_causal_mask():
    """Decoding one token under ``causal``: every key is at or before it, so no mask tensor is built (the reference
    and SDPA then run unmasked); other shapes and masks still get theirs."""
    assert mask_tensor("causal", 2, 1, 9, offset=8) is None
    assert mask_tensor("causal", 2, 2, 9, offset=7) is not None
    assert mask_tensor({"type": "sliding_window", "window": 3}, 2, 1, 9, offset=8) is not None
    kp = torch.zeros(2, 9, dtype=torch.bool)
    assert mask_tensor({"all": ["causal", "key_padding"]}, 2, 1, 9, offset=8, key_padding=kp) is not None


def test_lowered_gpt2_decodes_one_token_with_unmasked_sdpa():
    from nngraph import load_spec
    from nngraph.compilers.passes import lower
    from nngraph.compilers.torch import build_module

    graph = load_spec(SPECS / "gpt2_small.yaml", TINY["gpt2_small"])
    ref = build_module(graph, seed=3).eval()
    low = build_module(lower(graph, "cpu").graph, seed=3).eval()
    prompt = torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(generate(low, prompt, 12), generate(ref, prompt, 12, use_cache=False))
    assert low.h[0].attn.last_kernel == "sdpa"
