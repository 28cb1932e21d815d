"""Large models (external data), float16 export, the expected-length kernel choice, ORT session options.

* external data: the mechanism is tested with a forced small threshold (a 2 GB model is not built
  here): the weights go to ``OUT.data`` beside the file, both appear only after the checks (a
  failed verification leaves neither, no temporary folder stays), ``nngraph infer`` loads it and
  matches torch, and a model whose data file is missing is refused with the reason;
* float16: MLP, CNN (LeNet) and a transformer (BERT-shaped, fused kernels and fusions) exported with
  ``dtype="float16"`` run in ORT CPU and match the float32 torch model within the stated float16
  tolerance 1e-2 * max(1, max |torch|) -- and are not bit-identical to the float32 export (the
  conversion really happened);
* ``expected_seq``: below 512 the opset-23 Attention op is preferred over MultiHeadAttention, which
  ``--explain`` and the metadata say; at 512 and above MultiHeadAttention stays first;
* ``nngraph infer --threads/--opt-level/--no-spin`` reach the ORT session.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.onnx.export import ExportError, export_graph, plan
from nngraph.compilers.onnx.metadata import read_metadata
from nngraph.compilers.onnx.precision import FP16_TOLERANCE
from nngraph.compilers.onnx.runner import InferError, open_model, session_options
from nngraph.compilers.onnx.verify import max_abs_diff
from nngraph.compilers.torch import build_module
from nngraph import load_spec

from onnx_support import SPECS, randomize

BERT = ["layers=2", "vocab=100", "d_model=64", "heads=4", "ffn=128", "max_len=64"]


def _module(name, overrides=(), seed=0):
    graph = load_spec(SPECS / f"{name}.yaml", list(overrides))
    module = build_module(graph, seed=0).eval()
    randomize(module, seed=seed)
    return graph, module


# ----- external data ---------------------------------------------------------------------------------------
def test_forced_small_threshold_writes_weights_beside_the_model_and_infer_loads_it(tmp_path):
    graph, module = _module("mlp")
    out = tmp_path / "mlp.onnx"
    res = export_graph(graph, out, module=module, external_threshold=1024)
    data = tmp_path / "mlp.onnx.data"
    assert res.external_data == "mlp.onnx.data" and data.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx", "mlp.onnx.data"]   # no temp folder left
    weights = sum(p.numel() for p in module.parameters()) * 4
    assert out.stat().st_size < 20_000 and data.stat().st_size >= 0.99 * weights   # tensors < 1 KB stay inline
    assert data.stat().st_mode == out.stat().st_mode
    assert res.size_bytes == out.stat().st_size + data.stat().st_size
    model = onnx.load(str(out), load_external_data=False)
    assert read_metadata(model)["external_data"] == "mlp.onnx.data"
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    onnx.checker.check_model(str(out), full_check=True)
    assert res.verification.ok
    x = np.random.default_rng(0).standard_normal((2, 784)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    cli_res = CliRunner().invoke(cli.app, ["infer", str(out), "-i", f"x={tmp_path / 'x.npy'}",
                                           "-o", str(tmp_path / "y.npz")])
    assert cli_res.exit_code == 0, cli_res.output
    with np.load(tmp_path / "y.npz") as z, torch.no_grad():
        assert max_abs_diff(z["logits"], module(x=torch.from_numpy(x)).numpy()) <= 1e-5


def test_small_models_stay_one_file_and_external_data_can_be_forced(tmp_path):
    graph, module = _module("mlp")
    res = export_graph(graph, tmp_path / "a.onnx", module=module, verify=False)
    assert res.external_data is None and sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]
    res = export_graph(graph, tmp_path / "b.onnx", module=module, verify=False, external_data=True)
    assert res.external_data == "b.onnx.data" and (tmp_path / "b.onnx.data").is_file()


def test_a_failed_verification_of_an_external_data_export_writes_nothing(tmp_path):
    graph, module = _module("mlp")
    with pytest.raises(ExportError, match="does not match torch"):
        export_graph(graph, tmp_path / "m.onnx", module=module, external_data=True, tolerance=0.0,
                     dtype="float16")
    assert list(tmp_path.iterdir()) == []


def test_infer_refuses_a_model_whose_data_file_is_missing(tmp_path):
    graph, module = _module("mlp")
    out = tmp_path / "m.onnx"
    export_graph(graph, out, module=module, verify=False, external_data=True)
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(InferError, match=r"m\.onnx\.data \(external data\), which is not beside it"):
        open_model(out)


# ----- float16 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,overrides", [("mlp", []), ("lenet", []), ("bert_encoder", BERT)])
def test_float16_export_runs_in_ort_cpu_and_matches_float32_torch(name, overrides, tmp_path):
    graph, module = _module(name, overrides, seed=4)
    f32, f16 = tmp_path / "f32.onnx", tmp_path / "f16.onnx"
    export_graph(graph, f32, module=module, verify=False)
    res = export_graph(graph, f16, module=module, dtype="float16")   # verified: float16 file vs float32 torch
    assert res.dtype == "float16" and res.verification.tolerance == FP16_TOLERANCE and res.verification.ok
    for run in res.verification.runs:
        assert run["max_abs_diff"] <= FP16_TOLERANCE * max(1.0, run["scale"])
    model = onnx.load(str(f16))
    assert read_metadata(model)["precision"]["dtype"] == "float16"
    halves = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert halves and not [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
                           and np.prod(t.dims) > 64]
    assert f16.stat().st_size < 0.6 * f32.stat().st_size      # half the bytes per weight
    # the same float32 inputs and outputs as the float32 file, different (rounded) values
    s16, s32 = open_model(f16), open_model(f32)
    assert [(i.name, i.type) for i in s16.get_inputs()] == [(i.name, i.type) for i in s32.get_inputs()]
    from nngraph.compilers.onnx.inputs import sample_inputs

    feeds = {k: v.numpy() for k, v in sample_inputs(graph, None, seed=9).items()
             if k in {i.name for i in s16.get_inputs()}}
    a, b = s16.run(None, feeds), s32.run(None, feeds)
    assert all(x.dtype == np.float32 for x in a)
    assert any(max_abs_diff(x, y) > 0 for x, y in zip(a, b))


def test_unknown_dtype_is_refused(tmp_path):
    graph, module = _module("mlp")
    with pytest.raises(ExportError, match="--dtype bfloat8 is not supported: use float32 or float16"):
        export_graph(graph, tmp_path / "m.onnx", module=module, dtype="bfloat8")


# ----- the attention kernel by expected length ----------------------------------------------------------------
def test_expected_short_sequences_pick_the_attention_op_long_ones_multi_head_attention():
    graph = load_spec(SPECS / "bert_encoder.yaml", BERT)
    assert {c.kernel.name for c in plan(graph).values()} == {"ort-mha"}
    short = plan(graph, expected_seq=128)
    assert {c.kernel.name for c in short.values()} == {"onnx-attention"}
    assert all("expected sequence length 128" in c.reason for c in short.values())
    assert {c.kernel.name for c in plan(graph, expected_seq=2048).values()} == {"ort-mha"}
    gpt = load_spec(SPECS / "gpt2_small.yaml", ["layers=1", "vocab=100", "d_model=64", "heads=4", "ctx=64"])
    assert {c.kernel.name for c in plan(gpt, expected_seq=128).values()} == {"ort-gqa"}   # causal: GQA stays first


def test_expected_seq_is_in_the_metadata_and_explain(tmp_path):
    graph = load_spec(SPECS / "bert_encoder.yaml", BERT)
    res = CliRunner().invoke(cli.app, ["export", str(SPECS / "bert_encoder.yaml"),
                                       *sum((["--set", s] for s in BERT), []), "--expected-seq", "128",
                                       "--explain", "-o", str(tmp_path / "b.onnx")])
    assert res.exit_code == 0, res.output
    assert "onnx-attention (Attention)" in res.output and "expected sequence length 128" in res.output
    meta = read_metadata(onnx.load(str(tmp_path / "b.onnx")))
    assert meta["expected_seq"] == "128"
    assert {v["kernel"] for v in meta["attention_kernels"].values()} == {"onnx-attention"}
    del graph


# ----- ORT session options -------------------------------------------------------------------------------------
def test_session_options_map_threads_level_and_spinning():
    import onnxruntime as ort

    opts = session_options(threads=2, opt_level="basic", spin=False)
    assert opts.intra_op_num_threads == 2
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(InferError, match="unknown optimization level 'max'"):
        session_options(opt_level="max")


def test_infer_cli_takes_session_options(tmp_path):
    graph, module = _module("mlp")
    out = tmp_path / "m.onnx"
    export_graph(graph, out, module=module, verify=False)
    np.save(tmp_path / "x.npy", np.zeros((1, 784), np.float32))
    res = CliRunner().invoke(cli.app, ["infer", str(out), "-i", f"x={tmp_path / 'x.npy'}", "--threads", "1",
                                       "--opt-level", "disable", "--no-spin"])
    assert res.exit_code == 0, res.output
    assert "logits: [1, 10] float32" in res.output
    res = CliRunner().invoke(cli.app, ["infer", str(out), "-i", f"x={tmp_path / 'x.npy'}", "--opt-level", "max"])
    assert res.exit_code == 1 and "unknown optimization level 'max'" in res.output
