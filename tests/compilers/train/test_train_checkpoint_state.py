"""Tampered checkpoint states (a file that verifies, because its digest was recomputed) are refused on resume
with one clear error naming the file and the field -- never a bare ValueError/TypeError/KeyError/RuntimeError,
and never accepted silently (a negative or astronomic step, LoRA layers the run does not have, lost optimizer
state)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.state import checkpoint as ck
from nngraph.compilers.train import CheckpointError, train

from conftest import MLP

QUIET = ["train.log.plot=false", "train.log.tensorboard=false", "train.log.progress=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 3-step run of the small MLP; each test tampers with a copy of its newest checkpoint."""
    folder = tmp_path_factory.mktemp("state")
    spec = folder / "spec.yaml"
    spec.write_text(MLP)
    train(spec, out=folder / "run", overrides=QUIET, steps=3, quiet=True)
    return spec, folder / "run"


def tampered(run, tmp_path, edit) -> tuple:
    """A copy of the run whose newest checkpoint's state (and tensors) ``edit`` changed, saved so that it verifies."""
    spec, source = run
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    newest = ck.latest(source / "checkpoints")
    tensors, state = dict(newest.tensors), dict(newest.state)
    edit(tensors, state)
    path = ck.save(out / "checkpoints", newest.path.name, tensors, state)
    return spec, out, path


def refusal(run, tmp_path, edit) -> str:
    spec, out, path = tampered(run, tmp_path, edit)
    with pytest.raises(CheckpointError) as info:
        train(spec, out=out, overrides=QUIET, steps=5, resume=True, quiet=True)
    assert not (out / "model.safetensors").exists()
    return str(info.value).replace(str(path), "CKPT")


def run_field(key, value):
    def edit(tensors, state):
        state["run"] = {**state["run"], key: value}
    return edit


def fix(text: str) -> str:
    return f"{text}; the file is damaged or was edited: resume from another checkpoint or start a new run"


@pytest.mark.parametrize(("key", "value", "why"), [
    ("step", -5, "is -5, not a count from 0 to 1,000,000,000,000"),
    ("step", 10**30, f"is {10**30}, not a count from 0 to 1,000,000,000,000"),
    ("step", "3", "is '3', not a count from 0 to 1,000,000,000,000"),
    ("step", True, "is True, not a count from 0 to 1,000,000,000,000"),
    ("best_step", 7, "is 7, not a count from 0 to 3"),
    ("bad_evals", -1, "is -1, not a count from 0 to 3"),
    ("best", "nan", "is 'nan', not a finite number or null"),
    ("best", float("inf"), "is inf, not a finite number or null"),
])
def test_run_counters_out_of_range_or_of_the_wrong_type_are_refused(run, tmp_path, key, value, why):
    assert refusal(run, tmp_path, run_field(key, value)) == fix(f"'CKPT': checkpoint field 'run.{key}' {why}")


def test_lora_layers_the_run_does_not_adapt_are_refused(run, tmp_path):
    def edit(tensors, state):
        state["lora"] = ["bogus.layer"]
    assert refusal(run, tmp_path, edit) == fix("'CKPT': checkpoint field 'lora' names the layers ['bogus.layer']; "
                                               "this run adapts []")


def test_lost_optimizer_state_is_refused_instead_of_restarting_adam_silently(run, tmp_path):
    def edit(tensors, state):
        for key in [k for k in tensors if k.startswith("optim/")]:
            del tensors[key]
    assert refusal(run, tmp_path, edit) == fix("'CKPT': checkpoint field 'optimizer' holds no optimizer state after "
                                               "3 updates")


def test_optimizer_state_of_the_wrong_shape_is_refused(run, tmp_path):
    import torch

    def edit(tensors, state):
        tensors["optim/0/exp_avg"] = torch.zeros(2, 2)
    assert refusal(run, tmp_path, edit) == fix("'CKPT': checkpoint field 'optimizer' has exp_avg of shape [2, 2] for "
                                               "parameter 0 of shape [16, 64]")


@pytest.mark.parametrize(("key", "value", "why"), [
    ("optimizer", None, "'optimizer' is missing"),
    ("optimizer", {"param_groups": 5, "plain": {}}, "'optimizer' cannot be loaded ("),
    ("scheduler", "x", "'scheduler' has str, expected the keys ["),
    ("rng", {"python": 5}, "'rng' cannot be loaded ("),
    ("run", [3], "'run' is a list"),
])
def test_fields_of_the_wrong_type_are_refused_naming_the_field(run, tmp_path, key, value, why):
    def edit(tensors, state):
        state[key] = value
    assert refusal(run, tmp_path, edit).startswith(f"'CKPT': checkpoint field {why}")


def test_a_scheduler_field_of_the_wrong_type_is_named(run, tmp_path):
    def edit(tensors, state):
        state["scheduler"] = {**state["scheduler"], "last_epoch": "3"}
    assert refusal(run, tmp_path, edit) == fix("'CKPT': checkpoint field 'scheduler.last_epoch' is a str, expected "
                                               "int")


def test_the_cli_says_it_in_one_line_and_exits_1(run, tmp_path):
    spec, out, path = tampered(run, tmp_path, run_field("step", -5))
    res = CliRunner().invoke(cli.app, ["train", str(spec), "--out", str(out), "--resume", "--steps", "5", "-q"])
    assert res.exit_code == 1
    assert res.output == "error: " + fix(f"'{path}': checkpoint field 'run.step' is -5, not a count from 0 to "
                                         "1,000,000,000,000") + "\n"


def test_export_refuses_lora_layers_the_spec_does_not_have(run, tmp_path):
    from nngraph import load_spec
    from nngraph.compilers.onnx.weights import ExportWeightsError, load_into
    from nngraph.compilers.torch import build_module

    def edit(tensors, state):
        state["lora"] = ["fc", "bogus"]
    spec, out, path = tampered(run, tmp_path, edit)
    graph = load_spec(spec)
    with pytest.raises(ExportWeightsError) as info:
        load_into(build_module(graph), graph, path)
    assert str(info.value) == fix(f"'{path}': checkpoint field 'lora' names layers that are not linear layers of "
                                  "this spec: ['bogus']")


def test_a_state_that_is_not_a_json_object_is_refused(tmp_path):
    import torch
    from safetensors.torch import save

    state, tensors = "[1, 2]", {"model/w": torch.zeros(1)}
    plain = save(tensors, metadata={"format": ck.FORMAT, "state": state})
    data = plain[8 + int.from_bytes(plain[:8], "little"):]  # the tensor bytes the digest covers
    path = tmp_path / ck.step_name(1)
    path.write_bytes(save(tensors, metadata={"format": ck.FORMAT, "state": state, "sha256": ck._digest(state, data)}))
    with pytest.raises(CheckpointError) as info:
        ck.read(path)
    assert str(info.value) == f"'{path}': its state is a JSON list, not an object"
