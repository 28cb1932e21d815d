"""`nngraph export --triton DIR`: a Triton model repository whose config.pbtxt parses with Triton's own
model-config protobuf (tritonclient's model_config_pb2) and agrees with the ONNX file beside it: the same
input/output names, each data type the numpy type of the ONNX element type (through tritonclient's and
onnx's own tables), the ONNX file's fixed dims, and the shapes ONNX Runtime really produces."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import triton_to_np_dtype
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.onnx.runner import open_model
from nngraph.compilers.onnx.triton import config_text

from onnx_support import SPECS, small_overrides

CASES = {"bert_encoder": {"batch": 2, "seq": 5}, "gcn": {"num_nodes": 6, "num_edges": 9}}


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    folder = tmp_path_factory.mktemp("triton")
    for name in CASES:
        sets = [a for o in small_overrides(SPECS / f"{name}.yaml") for a in ("--set", o)]
        res = CliRunner().invoke(cli.app, ["export", str(SPECS / f"{name}.yaml"), *sets, "--triton", str(folder),
                                           "--triton-max-batch", "8", "--no-verify"])
        assert res.exit_code == 0, res.output
        assert f"config.pbtxt (Triton model '{name}'" in res.output
    return folder


def _config(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _sample(arg, sizes):
    shape = [sizes[d] if isinstance(d, str) else d for d in arg.shape]
    if arg.type == "tensor(int64)":
        return np.ones(shape, np.int64)
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name", CASES)
def test_config_parses_with_tritons_protobuf_and_agrees_with_the_onnx_file(repository, name):
    model_file = repository / name / "1" / "model.onnx"
    config = _config((repository / name / "config.pbtxt").read_text())
    model = onnx.load(str(model_file))
    batched = name == "bert_encoder"
    assert config.name == name and config.backend == "onnxruntime"
    assert config.max_batch_size == (8 if batched else 0) and config.HasField("dynamic_batching") == batched
    assert [(g.kind, g.count) for g in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)]
    session = open_model(model_file)
    feeds = {i.name: _sample(i, CASES[name]) for i in session.get_inputs()}
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    for entries, values, arrays in ((config.input, model.graph.input, feeds), (config.output, model.graph.output, outputs)):
        assert [e.name for e in entries] == [v.name for v in values]
        for entry, value in zip(entries, values):
            elem = value.type.tensor_type.elem_type
            triton = model_config_pb2.DataType.Name(entry.data_type).removeprefix("TYPE_")
            assert np.dtype(triton_to_np_dtype(triton)) == onnx.helper.tensor_dtype_to_np_dtype(elem)
            dims = list(entry.reshape.shape if entry.HasField("reshape") else entry.dims)
            dims = ([-1] if batched else []) + dims
            onnx_dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
            assert len(dims) == len(onnx_dims)
            assert all(d == o for d, o in zip(dims, onnx_dims) if o is not None)  # fixed in ONNX: the same number
            actual = arrays[value.name].shape
            assert all(d in (-1, a) for d, a in zip(dims, actual)), (value.name, dims, actual)


def test_bert_config_names_the_spec_dims_and_batches_dynamically(repository):
    config = _config((repository / "bert_encoder" / "config.pbtxt").read_text())
    assert {i.name: list(i.dims) for i in config.input} == {"tokens": [-1], "token_types": [-1], "lengths": [1]}
    assert list(config.input[2].reshape.shape) == []  # [batch] alone: dims [1] reshaped to a scalar per row
    assert {o.name: list(o.dims) for o in config.output} == {"hidden": [-1, 16], "logits": [-1, 50]}
    assert config.dynamic_batching.max_queue_delay_microseconds == 1000


def test_the_cuda_target_gets_a_gpu_instance_group(repository):
    model = onnx.load(str(repository / "gcn" / "1" / "model.onnx"), load_external_data=False)
    config = _config(config_text(model, "gcn", "ort-cuda", 4))
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    assert config.max_batch_size == 0 and {i.name: list(i.dims) for i in config.input} == {"x": [-1, 34],
                                                                                          "edge_index": [2, -1]}


def test_triton_and_o_together_are_a_usage_error(tmp_path):
    res = CliRunner().invoke(cli.app, ["export", str(SPECS / "gcn.yaml"), "-o", str(tmp_path / "m.onnx"),
                                       "--triton", str(tmp_path)])
    assert res.exit_code == 2 and "give -o or --triton, not both" in res.output
