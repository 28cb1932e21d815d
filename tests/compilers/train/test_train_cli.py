"""`nngraph train`: output, exit codes, errors as file:line:col without tracebacks."""

from __future__ import annotations

from typer.testing import CliRunner

import cli
from compilers.torch.weights import load_weights

from train_helpers import ROOT

runner = CliRunner()


def test_train_prints_the_plan_and_results_and_writes_the_run_folder(tmp_path, write_spec):
    spec, out = write_spec(), tmp_path / "run"
    res = runner.invoke(cli.app, ["train", str(spec), "--out", str(out), "--steps", "6", "--seed", "2"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == ("training mlp_small: task classification on digits; 1,210 trainable of 1,210 parameters; "
                        "6 steps of 16 x 1, adamw lr 0.01; device cpu")
    assert lines[1] == "stopped after 6 steps (steps)" and lines[-1].startswith(f"wrote {out}/model.safetensors")
    assert any(line.startswith("test (final (step 6) weights): loss ") for line in lines)
    for name in ("metrics.jsonl", "config.json", "summary.json", "model.safetensors", "checkpoints"):
        assert (out / name).exists(), name
    w = load_weights(out / "model.safetensors")
    assert w.metadata["spec"] == "mlp_small" and set(w.tensors) == {"fc.weight", "fc.bias", "head.weight", "head.bias"}


def test_a_bad_train_key_exits_1_with_file_line_col_and_no_traceback(write_spec):
    spec = write_spec(train_extra="grad_clip: -1")
    res = runner.invoke(cli.app, ["train", str(spec)])
    assert res.exit_code == 1
    assert f"{spec}:18:14: error: train.grad_clip must be >= 0.0, got -1" in res.output
    assert "Traceback" not in res.output


def test_a_bad_set_override_and_a_missing_data_file_are_one_line_errors(write_spec, tmp_path):
    spec = write_spec()
    res = runner.invoke(cli.app, ["train", str(spec), "--set", "train.steps=many"])
    assert res.exit_code == 1
    assert "--set train.steps=many: error: train.steps: expected an integer, got a string 'many'" in res.output
    res = runner.invoke(cli.app, ["train", str(spec), "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path)])
    assert res.exit_code == 1
    assert f"error: data file '{tmp_path / 'none.csv'}' not found" in res.output and "Traceback" not in res.output


def test_steps_and_epochs_together_are_a_usage_error(write_spec):
    res = runner.invoke(cli.app, ["train", str(write_spec()), "--steps", "3", "--epochs", "1"])
    assert res.exit_code == 2 and "give --steps or --epochs, not both" in res.output


def test_a_config_file_with_an_error_points_into_that_file(write_spec, tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("train:\n  schedule: {type: cosin}\n")
    res = runner.invoke(cli.app, ["train", str(ROOT / "specs/mlp.yaml"), "--config", str(cfg)])
    assert res.exit_code == 1
    assert f"{cfg}:2:20: error: train.schedule.type: expected one of constant, cosine, linear, got 'cosin'" in res.output
    assert "hint: did you mean 'cosine'?" in res.output


def test_resume_refuses_another_architecture_or_a_changed_configuration(write_spec, tmp_path):
    spec, out = write_spec(), tmp_path / "run"
    assert runner.invoke(cli.app, ["train", str(spec), "--out", str(out), "--steps", "3", "-q"]).exit_code == 0
    res = runner.invoke(cli.app, ["train", str(spec), "--out", str(out), "--resume", "--set", "hidden=8"])
    assert res.exit_code == 1 and "was saved from a different architecture (fingerprint" in res.output
    res = runner.invoke(cli.app, ["train", str(spec), "--out", str(out), "--resume", "--set", "train.optimizer.lr=0.5"])
    assert res.exit_code == 1
    assert "cannot resume" in res.output and "exactly: the training configuration changed (optimizer)" in res.output
    res = runner.invoke(cli.app, ["train", str(spec), "--out", str(out), "--resume", "--steps", "5"])
    assert res.exit_code == 0 and "(step 3)" in res.output and "stopped after 5 steps" in res.output
