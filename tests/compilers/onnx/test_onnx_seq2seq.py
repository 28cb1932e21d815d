"""Encoder-decoder incremental decoding: encoder file once, decoder step with a self-attention KV cache.

specs/t5_encoder_decoder.yaml (small sizes, randomized weights) exported with ``kv_cache``: the
memory cut (encoder_norm), both files verified against their torch parts, and greedy tokens from
ONNX Runtime equal to a torch greedy loop that re-runs the FULL model (source + target so far)
every step -- so the split, the cache and the per-step memory feed are all checked end to end.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.onnx.export import ExportError, export_graph
from nngraph.compilers.onnx.generate import generate
from nngraph.compilers.onnx.metadata import read_metadata
from nngraph.compilers.onnx.runner import InferError
from nngraph.compilers.onnx.seq2seq import encoder_path, split
from nngraph.compilers.torch import build_module
from nngraph import load_spec

from onnx_support import SPECS, randomize

T5 = SPECS / "t5_encoder_decoder.yaml"
#: pinned sizes (not the spec's small-sizes comment): the token ranges and the varied-token check depend on them
SMALL = ["vocab=100", "d_model=32", "heads=4", "d_kv=8", "d_ff=64", "layers=2"]


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t5")
    graph = load_spec(T5, SMALL)
    module = build_module(graph, seed=0).eval()
    randomize(module, seed=3)
    with torch.no_grad():  # decoder layers that outweigh the tied embedding's echo of the input token: varied tokens
        for key, value in module.state_dict().items():
            if key.startswith("decoder.") and (".ff." in key or ".out." in key):
                value.mul_(6.0)
    file = folder / "t5.onnx"
    result = export_graph(graph, file, module=module, kv_cache=True)
    return graph, module, file, result


def _torch_greedy(module, src, lengths, start, steps):
    tgt = torch.as_tensor(start)
    with torch.no_grad():
        for _ in range(steps):
            logits = module(src_tokens=src, src_lengths=lengths, tgt_tokens=tgt)
            logits = logits["logits"] if isinstance(logits, dict) else logits
            tgt = torch.cat([tgt, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tgt.numpy()


def test_split_cuts_t5_at_the_encoder_output():
    graph = load_spec(T5, SMALL)
    parts = split(graph)
    assert parts.memory == "encoder_norm"
    assert parts.source_inputs == ["src_tokens", "src_lengths"] and parts.shared_inputs == ["src_lengths"]
    assert list(parts.encoder.inputs) == ["src_tokens", "src_lengths"] and list(parts.encoder.outputs) == ["memory"]
    assert list(parts.decoder.inputs) == ["tgt_tokens", "encoder_norm", "src_lengths"]
    assert not any(n.startswith("encoder") and n != "encoder_norm" for n in parts.decoder.nodes)
    assert "encoder_norm" not in parts.decoder.nodes and "decoder_embed" not in parts.encoder.nodes


def test_t5_exports_an_encoder_file_and_a_cached_decoder_step_both_verified(t5):
    graph, _, file, result = t5
    enc_file = encoder_path(file)
    assert enc_file.name == "t5.encoder.onnx" and enc_file.is_file() and file.is_file()
    assert result.verification.ok and result.encoder.verification.ok
    whats = {r["what"] for r in result.verification.runs}
    assert whats == {"prefill (empty cache)", "decode step (cached)"}
    meta = read_metadata(onnx.load(str(file)))
    assert meta["seq2seq"] == {"encoder": "t5.encoder.onnx", "memory": "encoder_norm",
                               "source_inputs": ["src_tokens", "src_lengths"], "shared_inputs": ["src_lengths"]}
    # one cache per decoder SELF-attention layer; cross-attention reads the memory input every step
    assert [layer["node"] for layer in meta["kv_cache"]["layers"]] == ["decoder.0.self_attn", "decoder.1.self_attn"]
    names = [i.name for i in onnx.load(str(file)).graph.input]
    assert names == ["tgt_tokens", "encoder_norm", "src_lengths", "past.0.key", "past.0.value", "past.1.key",
                     "past.1.value"]
    assert [i.name for i in onnx.load(str(enc_file)).graph.input] == ["src_tokens", "src_lengths"]


def test_greedy_tokens_from_onnxruntime_equal_torch_for_t5(t5):
    _, module, file, _ = t5
    rng = np.random.default_rng(4)
    src = rng.integers(1, 100, (2, 9))
    lengths = np.array([9, 6])
    start = np.array([[3], [7]], dtype=np.int64)
    want = _torch_greedy(module, torch.from_numpy(src), torch.from_numpy(lengths), start, 10)
    got = generate(file, start, 10, source=src, inputs={"src_lengths": lengths})
    assert got.shape == (2, 11)
    assert len(set(want[:, 1:].reshape(-1).tolist())) > 2   # not a degenerate constant sequence
    np.testing.assert_array_equal(got, want)


def test_generate_cli_decodes_t5_spec_with_source(tmp_path):
    out = tmp_path / "tokens.json"
    res = CliRunner().invoke(cli.app, ["generate", str(T5), *sum((["--set", s] for s in SMALL), []),
                                       "--ids", "3", "--source", "5,6,7,8", "-n", "4", "-o", str(out)])
    assert res.exit_code == 0, res.output
    graph = load_spec(T5, SMALL)
    module = build_module(graph, seed=0).eval()
    want = _torch_greedy(module, torch.tensor([[5, 6, 7, 8]]), torch.tensor([4]), np.array([[3]]), 4)
    assert json.loads(out.read_text())["tokens"] == want.tolist()
    assert ",".join(map(str, want[0])) in res.output


def test_generate_without_source_for_an_encoder_decoder_says_so(t5):
    _, _, file, _ = t5
    with pytest.raises(InferError, match="source token ids"):
        generate(file, [[3]], 2)


def test_kv_cache_of_cross_attention_on_a_computed_memory_is_refused_without_the_split():
    from nngraph.compilers.onnx.export import _check_kv

    graph = load_spec(T5, SMALL)
    with pytest.raises(ExportError, match="nngraph.compilers.onnx.seq2seq"):
        _check_kv(graph, [n for n in graph.nodes.values() if n.op == "attention"])
