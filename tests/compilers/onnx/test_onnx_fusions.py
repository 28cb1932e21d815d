"""ONNX Runtime fusions on the exported graph (compilers/onnx/fusions): which subgraphs they take, what they refuse,
and that the fused file computes what the unfused one does.

BERT-shaped (post-LN, exact GELU, key padding) and GPT-2-shaped (pre-LN: the residual sum is also the
next block's input, tanh GELU) specs at small sizes with randomized weights; every fused file is
compared with the unfused export of the same module on padded inputs (<= 1e-5) and checked by
onnx.checker. Hand-built graphs pin the refusals (broadcast residual, LN stats used, shared bias add).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nngraph.compilers.onnx.export import ExportError, export_graph
from nngraph.compilers.onnx.fusions import DEFAULT_FUSIONS, apply_fusions
from nngraph.compilers.onnx.metadata import read_metadata
from nngraph.compilers.onnx.runner import make_session
from nngraph.compilers.torch import build_module
from nngraph import load_spec

from onnx_support import SPECS, randomize

BERT = ["layers=2", "vocab=100", "d_model=64", "heads=4", "ffn=128", "max_len=64"]
GPT2 = ["layers=2", "vocab=100", "d_model=64", "heads=4", "ctx=64"]


def _ops(path) -> Counter:
    return Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in onnx.load(str(path)).graph.node)


ELEMENTWISE = ["skip_layer_norm", "bias_gelu", "mha_bias"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fusions")
    graph = load_spec(SPECS / "bert_encoder.yaml", BERT)
    module = build_module(graph, seed=0).eval()
    randomize(module, seed=2)
    files = {}
    for key, kernel, fuse in [("plain", "ort-mha", False), ("default", "ort-mha", None), ("fused", "ort-mha", ELEMENTWISE),
                              ("packed", "ort-mha", ["skip_layer_norm", "bias_gelu", "packed_qkv"]),
                              ("attn", "onnx-attention", ["skip_layer_norm", "bias_gelu"])]:
        files[key] = folder / f"bert-{key}.onnx"
        # the unfused file at the fused files' opset (bias_gelu's Gelu anchor makes those 20; left alone it
        # would be 17, where GELU is Erf arithmetic): the op counts below compare like with like
        opset = 20 if key == "plain" else None
        res = export_graph(graph, files[key], module=module, kernels={"*": kernel}, fuse=fuse, tolerance=1e-5,
                           opset=opset)
        files[key + ":result"] = res
    return graph, files


def _bert_feeds(seq=19):
    rng = np.random.default_rng(0)
    tok = rng.integers(1, 100, (2, seq))
    return {"tokens": tok, "token_types": rng.integers(0, 2, (2, seq)), "lengths": np.array([seq, seq - 7])}


def _run(path, feeds):
    return make_session(path).run(None, feeds)


def test_bert_fusions_emit_skip_layer_norm_with_bias_bias_gelu_and_the_mha_bias_input(bert):
    _, files = bert
    ops = _ops(files["fused"])
    # 2 layers x 2 residual norms; the embedding norm (position table broadcast over batch) and the MLM head
    # norm (no residual) stay LayerNormalization
    assert ops["com.microsoft.SkipLayerNormalization"] == 4 and ops["LayerNormalization"] == 2
    assert ops["com.microsoft.BiasGelu"] == 3          # 2 FFNs + the MLM head's dense+GELU
    assert ops["com.microsoft.MultiHeadAttention"] == 2 and "Gelu" not in ops
    model = onnx.load(str(files["fused"]))
    skip = [n for n in model.graph.node if n.op_type == "SkipLayerNormalization"]
    assert all(len(n.input) == 5 for n in skip)          # the projection bias folded in as input 4
    mha = [n for n in model.graph.node if n.op_type == "MultiHeadAttention"]
    assert all(len(n.input) > 3 and n.input[3] for n in mha)   # q/k/v biases as the op bias input
    assert ops["Add"] == _ops(files["plain"])["Add"] - 4 * 2 - 3 - 6   # residual+bias adds, gelu biases, q/k/v
    res = files["fused:result"]
    assert res.fusions == {"skip_layer_norm": 4, "bias_gelu": 3, "mha_bias": 2}
    assert read_metadata(model)["fusions"] == res.fusions
    assert "fusion skip_layer_norm x4" in res.explain()
    assert files["plain:result"].fusions == {} and _ops(files["plain"])["LayerNormalization"] == 6


def test_the_cpu_default_is_bias_gelu_and_packed_qkv_and_cuda_adds_the_rest(bert):
    _, files = bert
    assert DEFAULT_FUSIONS["cpu"] == ("bias_gelu", "packed_qkv") and "packed_qkv" not in DEFAULT_FUSIONS["cuda"]
    assert files["default:result"].fusions == {"bias_gelu": 3, "packed_qkv": 2}
    assert _ops(files["default"])["LayerNormalization"] == 6
    graph, _ = bert
    res = export_graph(graph, None, target="ort-cuda", kernels={"*": "ort-mha"}, verify=False)
    assert res.fusions == {"skip_layer_norm": 4, "bias_gelu": 3, "mha_bias": 2}


@pytest.mark.parametrize("key", ["default", "fused", "packed", "attn"])
def test_fused_bert_files_match_the_unfused_export_on_padded_inputs(bert, key):
    _, files = bert
    feeds = _bert_feeds()
    want = _run(files["plain"], feeds)
    got = _run(files[key], feeds)
    for a, b in zip(got, want):
        assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(b).max())


def test_packed_qkv_is_opt_in_and_packs_three_projections_into_contrib_attention(bert):
    _, files = bert
    ops = _ops(files["packed"])
    assert ops["com.microsoft.Attention"] == 2 and "com.microsoft.MultiHeadAttention" not in ops
    model = onnx.load(str(files["packed"]))
    att = next(n for n in model.graph.node if n.op_type == "Attention")
    w = next(t for t in model.graph.initializer if t.name == att.input[1])
    assert list(w.dims) == [64, 192]                     # [D, 3D]
    assert len(att.input) == 4 and att.input[3]          # key lengths as mask_index


def test_onnx_attention_kernel_file_gets_the_same_fusions(bert):
    _, files = bert
    ops = _ops(files["attn"])
    assert ops["Attention"] == 2 and ops["com.microsoft.SkipLayerNormalization"] == 4


@pytest.mark.parametrize("kernel", ["ort-gqa", "onnx-attention"])
def test_gpt2_pre_ln_residual_sum_comes_out_of_skip_layer_norm(kernel, tmp_path):
    graph = load_spec(SPECS / "gpt2_small.yaml", GPT2)
    module = build_module(graph, seed=0).eval()
    randomize(module, seed=1)
    plain, fused = tmp_path / "plain.onnx", tmp_path / "fused.onnx"
    export_graph(graph, plain, module=module, fuse=False)
    # onnx-attention: the fused qkv Split's k/v outputs feed only the Attention op that shape inference stands in for
    res = export_graph(graph, fused, module=module, tolerance=1e-5, fuse=["skip_layer_norm", "bias_gelu"],
                       kernels={"*": kernel})
    ops = _ops(fused)
    assert ops["com.microsoft.SkipLayerNormalization"] == 4 and ops["com.microsoft.FastGelu"] == 2
    skip = [n for n in onnx.load(str(fused)).graph.node if n.op_type == "SkipLayerNormalization"]
    # the sum feeds the next residual add, except at the final norm
    assert sum(len(n.output) == 4 and bool(n.output[3]) for n in skip) == 3
    assert res.fusions == {"skip_layer_norm": 4, "bias_gelu": 2}
    tok = {"tokens": np.random.default_rng(3).integers(0, 100, (2, 23))}
    np.testing.assert_allclose(_run(fused, tok)[0], _run(plain, tok)[0], atol=1e-5, rtol=0)


def test_onnx_target_gets_no_contrib_fusions_and_asking_for_them_is_an_error(tmp_path):
    graph = load_spec(SPECS / "bert_encoder.yaml", BERT)
    res = export_graph(graph, tmp_path / "std.onnx", target="onnx")
    assert res.fusions == {} and not any(n.domain for n in onnx.load(str(tmp_path / "std.onnx")).graph.node)
    with pytest.raises(ExportError, match="standard ops only"):
        export_graph(graph, tmp_path / "x.onnx", target="onnx", fuse=True, verify=False)
    with pytest.raises(ExportError, match="unknown fusion bogus"):
        export_graph(graph, tmp_path / "x.onnx", fuse=["bogus"], verify=False)


# ----- refusals on hand-built graphs ---------------------------------------------------------------------
def _model(nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _ln_inits(d=8):
    return {"gamma": np.ones(d, np.float32), "beta": np.zeros(d, np.float32)}


def test_skip_layer_norm_refuses_a_broadcast_residual():
    nodes = [helper.make_node("Add", ["x", "pos"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1)]
    m = _model(nodes, [_vi("x", ["b", "t", 8])], [_vi("y", ["b", "t", 8])],
               {**_ln_inits(), "pos": np.ones((1, 1, 8), np.float32)})
    assert apply_fusions(m, {"skip_layer_norm"}) == {}


def test_skip_layer_norm_refuses_when_the_norm_statistics_are_used():
    nodes = [helper.make_node("Add", ["x", "r"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y", "mean"], axis=-1)]
    m = _model(nodes, [_vi("x", ["b", "t", 8]), _vi("r", ["b", "t", 8])],
               [_vi("y", ["b", "t", 8]), _vi("mean", None)], _ln_inits())
    assert apply_fusions(m, {"skip_layer_norm"}) == {}


def test_skip_layer_norm_keeps_a_bias_add_that_is_used_elsewhere_and_fuses_the_rest():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Add", ["h", "bias"], ["hb"]),
             helper.make_node("Add", ["r", "hb"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1)]
    inits = {**_ln_inits(), "w": np.eye(8, dtype=np.float32), "bias": np.full(8, 0.5, np.float32)}
    outs = [_vi("y", ["b", "t", 8]), _vi("hb", ["b", "t", 8])]
    m = _model(nodes, [_vi("x", ["b", "t", 8]), _vi("r", ["b", "t", 8])], outs, inits)
    assert apply_fusions(m, {"skip_layer_norm"}) == {"skip_layer_norm": 1}
    skip = next(n for n in m.graph.node if n.op_type == "SkipLayerNormalization")
    assert list(skip.input)[:2] == ["r", "hb"] and len(skip.input) == 4   # no bias folded: hb is an output
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
    r = np.random.default_rng(1).standard_normal((2, 3, 8)).astype(np.float32)
    y = make_session(m.SerializeToString()).run(["y"], {"x": x, "r": r})[0]
    s = r + x + 0.5
    want = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, want, atol=1e-5)
