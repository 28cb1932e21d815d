"""`nngraph compile` and `nngraph inspect --torch`: forward checks, weights and generated source on disk."""

import importlib.util
import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.torch.weights import load_weights

SPECS = Path(__file__).resolve().parents[2] / "specs"
runner = CliRunner()


def test_compile_writes_weights_and_importable_source_with_the_same_weights(tmp_path):
    weights, source = tmp_path / "m.safetensors", tmp_path / "m.py"
    res = runner.invoke(cli.app, ["compile", str(SPECS / "mlp.yaml"), "-o", str(weights), "--emit-python", str(source), "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "torch parameters: 269,322 (matches" in res.output and "logits: [2, 10] ok" in res.output
    spec = importlib.util.spec_from_file_location("emitted_mlp", source)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.Mlp(seed=3)
    saved = load_weights(weights).tensors
    assert set(saved) == set(model.state_dict())
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_compile_of_an_invalid_spec_exits_1_with_a_location(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((SPECS / "mlp.yaml").read_text().replace("op: relu", "op: relux"))
    res = runner.invoke(cli.app, ["compile", str(bad), "-o", str(tmp_path / "w.pt")])
    assert res.exit_code == 1
    assert f"{bad}:" in res.output and "unknown op 'relux'" in res.output
    assert not (tmp_path / "w.pt").exists()


def test_inspect_torch_reports_real_parameters_and_forward_shapes_as_json():
    res = runner.invoke(cli.app, ["inspect", str(SPECS / "resnet18.yaml"), "--torch", "--format", "json", "--dim", "batch=1"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["torch"]["parameters"] == 11_689_512 and data["torch"]["ok"]
    assert data["torch"]["outputs"]["logits"] == {"torch": [1, 1000], "inferred": [1, 1000]}


def test_bad_dim_option_is_a_clear_error():
    res = runner.invoke(cli.app, ["compile", str(SPECS / "mlp.yaml"), "--dim", "batch"])
    assert res.exit_code == 2 and "NAME=INT" in res.output  # a malformed option is a usage error
