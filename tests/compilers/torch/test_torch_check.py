"""Forward checks on random inputs, and weights files (save/load, safety, atomicity)."""

from pathlib import Path

import pytest
import torch

from nngraph.compilers.torch import build_module, missing_ops
from nngraph.compilers.torch.check import concrete_dim, forward_check, parse_dims, random_inputs
from nngraph.compilers.torch.weights import WeightsError, check_fingerprint, load_weights, save_weights
from nngraph import load_spec
from nngraph.errors import SpecError

SPECS = Path(__file__).resolve().parents[3] / "specs"


def test_symbolic_dim_expressions_are_evaluated_with_the_given_sizes():
    assert concrete_dim("(h-3)//2+1", {"h": 11}) == 5
    assert concrete_dim("batch*seq", {"seq": 5}) == 10  # batch defaults to 2


def test_token_ids_stay_below_the_embedding_table_size():
    graph = load_spec(SPECS / "char_lstm.yaml")
    vocab = next(n.params["num"] for n in graph.nodes.values() if n.op == "embedding")
    tokens = random_inputs(graph, {"seq": 512}, seed=3)["tokens"]
    assert tokens.dtype == torch.int64 and int(tokens.max()) < vocab and int(tokens.min()) >= 0


def test_random_inputs_are_reproducible_by_seed():
    graph = load_spec(SPECS / "mlp.yaml")
    a, b, c = (random_inputs(graph, seed=s)["x"] for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_forward_check_reports_inferred_vs_real_output_shapes():
    graph = load_spec(SPECS / "lenet.yaml")
    result = forward_check(build_module(graph), graph, {"batch": 3})
    assert result.ok, result.problems
    assert result.outputs["logits"] == ((3, 10), (3, 10))


def test_forward_check_catches_a_shape_the_front_end_got_wrong():
    graph = load_spec(SPECS / "mlp.yaml")
    module = build_module(graph)
    graph.nodes["head"].outputs = {"out": graph.nodes["head"].out.with_last(11)}  # pretend inference said 11
    result = forward_check(module, graph)
    assert not result.ok and "torch gave [2, 10]" in result.problems[0]


def test_parse_dims_rejects_malformed_items():
    assert parse_dims(["seq=16", "batch=4"]) == {"seq": 16, "batch": 4}
    with pytest.raises(ValueError, match="NAME=INT"):
        parse_dims(["seq:16"])
    with pytest.raises(ValueError, match="--dim 'batch=0': a dim is at least 1"):
        parse_dims(["batch=0"])


_WIDE_KERNEL = """\
nngraph: 1
name: wide_kernel
inputs:
  x: {shape: [batch, 3, h, w], dtype: float32}
graph:
  - {name: c, op: conv2d, in: x, out: 4, kernel: 11, stride: 2}
outputs: {y: c}
"""


def test_a_kernel_larger_than_a_symbolic_dim_is_refused_at_the_node_with_the_size_that_works(tmp_path):
    (tmp_path / "k.yaml").write_text(_WIDE_KERNEL)
    graph = load_spec(tmp_path / "k.yaml")
    with pytest.raises(SpecError) as err:
        random_inputs(graph)  # h = w = 8 (the default): (8-11)//2+1 = -1
    (diag,) = err.value.diagnostics
    assert (diag.pos.line, diag.pos.col) == (6, 5)
    assert diag.message == ("node 'c' (conv2d) has dim 2 = (h+1)//2-5 = -1 at h=8 (the size assumed for a symbolic "
                            "dim not given with --dim)")
    assert diag.hint == "pass --dim h=INT with INT at least 11 (the kernels and strides of this node need it)"
    with pytest.raises(SpecError, match="has dim 3 = \\(w\\+1\\)//2-5 = 0 at w=10$"):
        random_inputs(graph, {"h": 11, "w": 10})  # (10-11)//2+1 = 0: empty
    assert tuple(random_inputs(graph, {"h": 11, "w": 11})["x"].shape) == (2, 3, 11, 11)


def test_sizes_whose_tensors_exceed_the_machine_memory_are_refused_before_allocating(monkeypatch):
    import nngraph.readers

    monkeypatch.setattr(nngraph.readers, "machine_memory", lambda: 10**8)  # 100 MB
    graph = load_spec(SPECS / "mlp.yaml")
    with pytest.raises(SpecError) as err:
        random_inputs(graph, {"batch": 40_000})  # 40,000 x 784 x 4 bytes = 125 MB
    (diag,) = err.value.diagnostics
    assert diag.pos.line == 12 and diag.message == ("input 'x' [40000, 784] at batch=40000 needs 125.4 MB, more than "
                                                     "this machine's 100.0 MB of memory")
    assert tuple(random_inputs(graph, {"batch": 30_000})["x"].shape) == (30_000, 784)  # 94 MB fits


def test_missing_ops_lists_ops_without_torch_implementation():
    assert missing_ops(load_spec(SPECS / "resnet18.yaml")) == []


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_round_trip_with_metadata(tmp_path, suffix):
    graph = load_spec(SPECS / "mlp.yaml")
    module = build_module(graph, seed=5)
    path = tmp_path / f"w{suffix}"
    save_weights(module, graph, path)
    loaded = load_weights(path)
    assert loaded.metadata["fingerprint"] == graph.fingerprint() and loaded.metadata["spec"] == "mlp"
    for key, value in module.state_dict().items():
        assert torch.equal(loaded.tensors[key], value)
    assert check_fingerprint(loaded, graph) is None
    assert loaded.metadata["vars"] == '{"classes": 10, "d_in": 784, "hidden": 256}'
    other = load_spec(SPECS / "mlp.yaml", ["hidden=128"])
    assert check_fingerprint(loaded, other) == ("the weights were trained with hidden=256 (this spec has hidden=128): "
                                                "pass --set hidden=256; loading the parameters whose names and shapes "
                                                "match")
    del loaded.metadata["vars"]  # weights saved before vars were recorded: the fingerprints only
    assert check_fingerprint(loaded, other) == (f"weights were saved from spec 'mlp' with fingerprint "
                                                f"{graph.fingerprint()}, this spec is {other.fingerprint()}: loading "
                                                "the parameters whose names and shapes match")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_pickled_code_in_a_weights_file_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "x": Evil()}, path)
    with pytest.raises(WeightsError) as info:
        load_weights(path)
    assert str(info.value) == (f"weights file '{path}' holds Python objects besides tensors (Unsupported global: "
                               "GLOBAL exec was not an allowed global by default); refused, because "
                               "loading them could run code from the file: save plain tensors, preferably as "
                               ".safetensors")
    assert "weights_only=False" not in str(info.value)  # torch's advice to run the file's code is never repeated


def test_non_tensor_values_in_a_pt_file_are_named(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"metadata": {}, "state_dict": {"fc1.weight": torch.ones(2), "fc1.bias": 3}}, path)
    with pytest.raises(WeightsError) as info:
        load_weights(path)
    assert str(info.value) == (f"'{path}': entry 'fc1.bias' is int, not a tensor (a weights file maps parameter "
                               "names to tensors)")


def test_devices_fifos_and_sparse_giants_are_refused_before_reading(tmp_path, monkeypatch):
    import os

    from nngraph import readers

    monkeypatch.setattr(readers, "machine_memory", lambda: 1 << 30)

    with pytest.raises(WeightsError, match=r"^weights file '/dev/zero' is not a regular file \(it is a character "
                                           r"device\); only regular files are read$"):
        load_weights("/dev/zero")
    os.mkfifo(tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match=r"w.safetensors' is not a regular file \(it is a FIFO"):
        load_weights(tmp_path / "w.safetensors")
    with open(tmp_path / "big.pt", "wb") as fh:
        fh.truncate(50 * 10**9)  # 50 GB on paper, nothing on disk
    with pytest.raises(WeightsError) as info:
        load_weights(tmp_path / "big.pt")
    assert str(info.value) == (f"weights file '{tmp_path / 'big.pt'}' is 50.0 GB, over the 536.9 MB limit on this "
                               "machine (a share of its 1.1 GB memory)")


def test_non_weights_files_are_clear_errors(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(WeightsError):
        load_weights(tmp_path / "junk.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "missing.pt")
