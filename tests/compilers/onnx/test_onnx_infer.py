"""`nngraph infer` and the runner: inputs from .npy/.npz/.json, outputs to .npz, and clear errors (exit 1, no traceback)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.onnx.export import export_graph
from nngraph.compilers.onnx.runner import InferError, check_feeds, open_model, run_model
from nngraph.compilers.torch import build_module
from nngraph import load_spec

from onnx_support import SPECS


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("infer")
    out = {}
    for name, overrides in (("mlp", ["hidden=16"]),
                            ("bert_encoder", ["vocab=50", "d_model=16", "heads=2", "layers=1", "ffn=32", "max_len=32"])):
        graph = load_spec(SPECS / f"{name}.yaml", overrides)
        module = build_module(graph, seed=0).eval()
        export_graph(graph, folder / f"{name}.onnx", module=module, verify=False)
        out[name] = (folder / f"{name}.onnx", graph, module)
    return out


def _invoke(*args: str):
    res = CliRunner().invoke(cli.app, ["infer", *args])
    assert "Traceback" not in res.output
    return res


def test_infer_npy_input_prints_outputs_and_writes_npz(models, tmp_path):
    path, graph, module = models["mlp"]
    x = np.random.default_rng(0).standard_normal((3, 784)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    res = _invoke(str(path), "--input", f"x={tmp_path / 'x.npy'}", "-o", str(tmp_path / "out.npz"))
    assert res.exit_code == 0, res.output
    assert "logits: [3, 10] float32" in res.stdout
    with np.load(tmp_path / "out.npz") as z:
        got = z["logits"]
    with torch.no_grad():
        want = module(x=torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-5


def test_infer_json_and_npz_inputs_use_the_model_dtypes(models, tmp_path):
    path, graph, module = models["bert_encoder"]
    tokens = [[1, 2, 3, 4], [5, 6, 7, 8]]
    (tmp_path / "tokens.json").write_text(json.dumps(tokens))
    (tmp_path / "types.json").write_text(json.dumps([[0, 0, 1, 1], [0, 1, 1, 1]]))
    np.savez(tmp_path / "lengths.npz", lengths=np.array([4, 2]), other=np.zeros(3))
    res = _invoke(str(path), "-i", f"tokens={tmp_path / 'tokens.json'}", "-i", f"token_types={tmp_path / 'types.json'}",
                  "-i", f"lengths={tmp_path / 'lengths.npz'}")
    assert res.exit_code == 0, res.output
    out = run_model(path, {"tokens": np.array(tokens), "token_types": np.array([[0, 0, 1, 1], [0, 1, 1, 1]]),
                           "lengths": np.array([4, 2])})
    with torch.no_grad():
        want = module(tokens=torch.tensor(tokens), token_types=torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]]),
                      lengths=torch.tensor([4, 2]))
    for name, value in out.items():
        assert np.abs(value - want[name].numpy()).max() <= 1e-5


@pytest.mark.parametrize("setup, message", [
    (lambda d: ("xx", np.zeros((2, 784), np.float32)), "the model has no input 'xx'"),
    (lambda d: ("x", np.zeros((2, 100), np.float32)),
     "input 'x' has size 100 in dim 1, the model's dim is fixed at 784 (shape [batch, 784], got [2, 100])"),
    (lambda d: ("x", np.zeros((784,), np.float32)), "input 'x' has rank 1 [784], the model takes rank 2 [batch, 784]"),
    (lambda d: ("x", np.zeros((2, 784), np.float64)),
     "input 'x' is float64, the model takes float32 (convert it, e.g. numpy: a.astype(np.float32))"),
])
def test_infer_reports_bad_inputs(models, tmp_path, setup, message):
    path, _, _ = models["mlp"]
    name, arr = setup(tmp_path)
    np.save(tmp_path / "a.npy", arr)
    res = _invoke(str(path), "--input", f"{name}={tmp_path / 'a.npy'}")
    assert res.exit_code == 1
    assert message in res.output


def test_infer_reports_a_missing_input_and_a_bad_input_argument(models, tmp_path):
    path, _, _ = models["bert_encoder"]
    np.save(tmp_path / "t.npy", np.zeros((2, 4), np.int64))
    res = _invoke(str(path), "--input", f"tokens={tmp_path / 't.npy'}")
    assert res.exit_code == 1 and "missing input 'token_types' [batch, seq]; give it with --input token_types=FILE" \
        in res.output
    res = _invoke(str(path), "--input", "tokens")
    assert res.exit_code == 1 and "--input 'tokens' is not NAME=FILE" in res.output
    (tmp_path / "f.json").write_text("[[1.5, 2.0]]")
    res = _invoke(str(path), "--input", f"tokens={tmp_path / 'f.json'}")
    assert res.exit_code == 1 and "input 'tokens' takes int64, the JSON holds fractions" in res.output


def test_dims_shared_by_inputs_must_agree(models):
    path, _, _ = models["bert_encoder"]
    session = open_model(path)
    feeds = {"tokens": np.zeros((2, 4), np.int64), "token_types": np.zeros((2, 4), np.int64),
             "lengths": np.ones(3, np.int64)}
    with pytest.raises(InferError, match="dim 'batch' is 2 in input 'tokens' but 3 in input 'lengths'"):
        check_feeds(session, feeds)


def test_infer_refuses_files_that_are_not_onnx(tmp_path, models):
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a protobuf\n" * 10)
    res = _invoke(str(bad), "--input", "x=x.npy")
    assert res.exit_code == 1 and f"'{bad}' is not an ONNX model" in res.output
    res = _invoke(str(tmp_path / "nope.onnx"))
    assert res.exit_code == 1 and "model file" in res.output and "not found" in res.output
    path, _, _ = models["mlp"]
    res = _invoke(str(path), "--input", f"x={tmp_path / 'missing.npy'}")
    assert res.exit_code == 1 and "input file" in res.output and "not found" in res.output
    res = _invoke(str(path), "--input", "x=x.npy", "--target", "tpu")
    assert res.exit_code == 2 and "unknown target 'tpu'" in res.output


def test_cuda_target_without_the_cuda_provider_says_so(models, tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    path, _, _ = models["mlp"]
    np.save(tmp_path / "x.npy", np.zeros((1, 784), np.float32))
    res = _invoke(str(path), "--input", f"x={tmp_path / 'x.npy'}", "--target", "ort-cuda")
    assert res.exit_code == 1 and "target ort-cuda needs CUDAExecutionProvider" in res.output


def test_thread_counts_are_bounded_by_the_machine(models):
    import os

    path, _, _ = models["mlp"]
    res = _invoke(str(path), "--threads", "100000")  # ORT segfaulted creating them
    cpus = os.cpu_count()
    assert res.exit_code == 2
    assert res.output == f"error: --threads 100000: this machine has {cpus} CPUs; give 1..{cpus}\n"


def test_fifo_and_zip_bomb_inputs_are_refused_before_reading(models, tmp_path):
    import os

    from hostile.hostile_fixtures import zip_bomb

    path, _, _ = models["mlp"]
    os.mkfifo(tmp_path / "x.npy")
    res = _invoke(str(path), "-i", f"x={tmp_path / 'x.npy'}")
    assert res.exit_code == 1 and res.output == (f"error: input file '{tmp_path / 'x.npy'}' is not a regular file "
                                                 "(it is a FIFO (named pipe)); only regular files are read "
                                                 "(for input 'x')\n")
    zip_bomb(tmp_path / "x.npz", "x", 1 << 26)
    res = _invoke(str(path), "-i", f"x={tmp_path / 'x.npz'}")
    assert res.exit_code == 1 and res.output == (f"error: input file '{tmp_path / 'x.npz'}' array 'x': 65.3 KB inflate "
                                                 "to 67.1 MB (over 200x): refused as a zip bomb; save it uncompressed "
                                                 "(numpy.savez) (for input 'x')\n")


def test_a_run_error_keeps_its_node_and_onnxruntime_logs_nothing_before_it(models, tmp_path, capfd):
    path, _, _ = models["bert_encoder"]
    np.save(tmp_path / "t.npy", np.array([[1, 2, 99, 3]]))  # 99 is outside the 50-token vocabulary
    np.save(tmp_path / "y.npy", np.zeros((1, 4), np.int64))
    np.save(tmp_path / "l.npy", np.array([4]))
    capfd.readouterr()
    res = _invoke(str(path), "-i", f"tokens={tmp_path / 't.npy'}", "-i", f"token_types={tmp_path / 'y.npy'}",
                  "-i", f"lengths={tmp_path / 'l.npy'}")
    assert res.exit_code == 1
    assert "onnxruntime" not in "".join(capfd.readouterr())  # ORT writes its log lines to fd 2 directly
    assert "running Gather node. Name:'" in res.output and "idx=99 must be within the inclusive range" in res.output
