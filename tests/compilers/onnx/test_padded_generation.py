"""Batched generation of rows with different lengths (issue 18 item 1): greedy tokens of a left-padded batch of
4 rows equal Hugging Face ``generate`` with the same attention mask, in torch (KV cache) and in ONNX Runtime
(an export with --kv-cache whose key_padding input covers past + new keys).

The specs are the zoo's GPT-2 and LLaMA-style decoders with a ``key_padding`` input read by every
self-attention mask (GPT-2 also a ``positions`` input for its learned table; RoPE is relative, so LLaMA
needs none); weights come from HF models built from small configs (random, perturbed norms and biases).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nngraph import load_spec
from nngraph.compilers.decoding import input_roles, left_pad
from nngraph.compilers.onnx.export import export_graph
from nngraph.compilers.onnx.generate import generate as ort_generate
from nngraph.compilers.onnx.runner import InferError
from nngraph.compilers.torch.hf_import import import_weights
from nngraph.compilers.torch import compile_spec
from nngraph.compilers.torch.ops.attention_cache import generate, stream

from onnx_support import SPECS

transformers = pytest.importorskip("transformers")

V = 96
ROWS = [[5, 61, 7, 80, 9, 10, 33], [11, 42], [13, 14, 75, 16], [17]]
NEW = 8
KP = "  key_padding: {shape: [batch, seq], dtype: bool}\n"


def _padded_spec(tmp_path, name: str) -> str:
    """The zoo spec with a key_padding input into every decoder layer's attention (and positions for GPT-2)."""
    text = (SPECS / f"{name}.yaml").read_text()
    layer = "decoder_layer:\n    doc:"
    head, _, rest = text.partition(layer)
    doc, _, rest = rest.partition("inputs: [x]")
    text = head + layer + doc + "inputs: [x, key_padding]" + rest
    tokens = next(line for line in text.splitlines(keepends=True) if line.startswith("  tokens:"))
    text = text.replace(tokens, tokens + KP + ("  positions: {shape: [batch, seq], dtype: int64}\n"
                                               if name == "gpt2_small" else ""))
    text = text.replace("mask: causal", "mask: {all: [causal, key_padding]}")
    text = text.replace("op: attention, in: ln_1,", "op: attention, in: {x: ln_1, key_padding: key_padding},")
    text = text.replace("op: attention, in: input_layernorm,",
                        "op: attention, in: {x: input_layernorm, key_padding: key_padding},")
    text = text.replace("op: position_embedding, in: wte,", "op: position_embedding, in: {x: wte, positions: positions},")
    text = text.replace('repeat: "${layers}", in: drop}', 'repeat: "${layers}", in: {x: drop, key_padding: key_padding}}')
    text = text.replace('repeat: "${layers}", in: embed_tokens}',
                        'repeat: "${layers}", in: {x: embed_tokens, key_padding: key_padding}}')
    path = tmp_path / f"{name}_padded.yaml"
    path.write_text(text)
    return str(path)


def _hf(which: str):
    if which == "gpt2_small":
        cfg = transformers.GPT2Config(vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                                      embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
        cls, sets, source = transformers.GPT2LMHeadModel, ["ctx=32", "d_model=32", "layers=2", "heads=4"], "hf-gpt2"
    else:
        cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=256, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                                       max_position_embeddings=64, tie_word_embeddings=False, bos_token_id=0,
                                       eos_token_id=0, pad_token_id=0)
        cls, sets, source = transformers.LlamaForCausalLM, ["d_model=32", "layers=2", "heads=4", "kv_heads=2"], "hf-llama"
    torch.manual_seed(0)
    model = cls(cfg).eval()
    with torch.no_grad():  # non-trivial weights: random tokens instead of one repeated id
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model, [f"vocab={V}", *sets], source


@pytest.fixture(scope="module", params=["gpt2_small", "llama_style"])
def padded(request, tmp_path_factory):
    hf, sets, source = _hf(request.param)
    spec = _padded_spec(tmp_path_factory.mktemp(request.param), request.param)
    model = import_weights(spec, source, hf.state_dict(), sets)
    graph = load_spec(spec, sets)
    ids, mask = left_pad(ROWS)
    want = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=NEW,
                       min_new_tokens=NEW, do_sample=False, num_beams=1, pad_token_id=0)
    return request.param, graph, model, want


def test_torch_padded_batch_equals_hf_generate(padded):
    """The torch decoder is called like the ONNX one: the padding inputs' roles come from the generated class."""
    name, graph, model, want = padded
    roles = input_roles(graph)
    assert set(roles.values()) == ({"key_padding", "positions"} if name == "gpt2_small" else {"key_padding"})
    assert model.input_roles == roles and model.unpositioned == ()
    steps = list(stream(model, ROWS, NEW))
    assert len(set(want[:, -NEW:].flatten().tolist())) > 4  # the oracle is not degenerate
    np.testing.assert_array_equal(np.stack([s.tokens for s in steps], axis=1), want[:, -NEW:].numpy())
    assert torch.equal(generate(model, ROWS, NEW), want)
    if name == "gpt2_small":  # the cache-free path re-runs the padded sequence: the same tokens
        assert torch.equal(generate(model, ROWS, NEW, use_cache=False), want)


def test_torch_refuses_padded_rows_the_model_cannot_be_told_about(tmp_path):
    """Without a key_padding input, or with a position table that reads no positions input, rows of different
    lengths are refused, as the ONNX decoder refuses them (the facts come from the generated class)."""
    sets = ["vocab=20", "d_model=16", "heads=2", "layers=1", "ctx=16"]
    plain = compile_spec(SPECS / "gpt_char.yaml", sets)
    assert plain.input_roles == {} and plain.unpositioned == ("wpe",)
    with pytest.raises(ValueError, match="has no key_padding input to mask padded keys"):
        list(stream(plain, [[1, 2, 3], [4]], 2))
    rows = [[1, 2, 3], [4, 5, 6]]  # one length: nothing to tell
    assert torch.equal(generate(plain, rows, 2), generate(plain, torch.tensor(rows), 2))
    text = open(_padded_spec(tmp_path, "gpt2_small")).read()
    text = text.replace("  positions: {shape: [batch, seq], dtype: int64}\n", "")
    text = text.replace("{x: wte, positions: positions}", "wte")
    (tmp_path / "no_positions.yaml").write_text(text)
    unpositioned = compile_spec(tmp_path / "no_positions.yaml", sets)
    assert unpositioned.input_roles == {"key_padding": "key_padding"} and unpositioned.unpositioned == ("wpe",)
    with pytest.raises(ValueError, match="position embedding 'wpe' reads no positions input"):
        list(stream(unpositioned, [[1, 2, 3], [4]], 2))


def test_onnxruntime_padded_batch_equals_hf_generate(padded, tmp_path):
    name, graph, model, want = padded
    path = tmp_path / f"{name}.onnx"
    result = export_graph(graph, path, module=model, kv_cache=True)
    assert result.verification.ok
    np.testing.assert_array_equal(ort_generate(path, ROWS, NEW), want.numpy())


def test_rows_of_different_lengths_need_a_key_padding_input(tmp_path):
    graph = load_spec(SPECS / "gpt_char.yaml", ["vocab=20", "d_model=16", "heads=2", "layers=1", "ctx=16"])
    path = tmp_path / "plain.onnx"
    export_graph(graph, path, kv_cache=True, verify=False)
    with pytest.raises(InferError, match="has no key_padding input to mask padded keys"):
        ort_generate(path, [[1, 2, 3], [4]], 2)


T5_SET = [f"vocab={V}", "d_model=32", "layers=2", "heads=4", "d_kv=8", "d_ff=64", "buckets=16", "max_distance=20"]


def test_t5_with_one_shared_table_on_a_padded_source_batch_equals_hf_generate(tmp_path):
    """T5's ``shared`` embedding read by the encoder, the decoder and the LM head: the decoder step gets an
    untied copy; a source batch of 4 rows of different lengths (src_lengths) decodes as HF does."""
    cfg = transformers.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                                num_heads=4, relative_attention_num_buckets=16, relative_attention_max_distance=20,
                                dropout_rate=0.0, feed_forward_proj="relu")
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    spec, sets = SPECS / "t5_encoder_decoder.yaml", [*T5_SET, "shared_embed=true"]  # T5's one table
    model = import_weights(str(spec), "hf-t5", hf.state_dict(), sets)
    assert "decoder_embed.weight" not in model.state_dict()  # one table
    lengths = np.array([7, 3, 5, 1])
    src = np.random.default_rng(3).integers(1, V, (4, 7))
    mask = (np.arange(7)[None] < lengths[:, None]).astype(np.int64)
    want = hf.generate(torch.from_numpy(src), attention_mask=torch.from_numpy(mask), max_new_tokens=NEW,
                       min_new_tokens=NEW, do_sample=False, num_beams=1, decoder_start_token_id=0).numpy()
    assert len(set(want[:, 1:].flatten().tolist())) > 4
    start = torch.zeros((4, 1), dtype=torch.long)
    got = generate(model, start, NEW, input_name="tgt_tokens", include=["decoder"], src_tokens=torch.from_numpy(src),
                   src_lengths=torch.from_numpy(lengths))
    np.testing.assert_array_equal(got.numpy(), want)
    path = tmp_path / "t5.onnx"
    assert export_graph(load_spec(spec, sets), path, module=model, kv_cache=True).verification.ok
    got = ort_generate(path, start.numpy(), NEW, source=src, inputs={"src_lengths": lengths})
    np.testing.assert_array_equal(got, want)
