"""`nngraph train`: output, exit codes, errors as file:line:col without tracebacks."""

from __future__ import annotations

from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.torch.weights import load_weights

from train_helpers import ROOT, finish, nngraph

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
    res = runner.invoke(cli.app, ["train", str(spec), "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 1
    assert f"error: data file '{tmp_path / 'none.csv'}' not found" in res.output and "Traceback" not in res.output


def test_steps_with_epochs_and_an_unknown_strategy_are_usage_errors(write_spec):
    res = runner.invoke(cli.app, ["train", str(write_spec()), "--steps", "3", "--epochs", "1"])
    assert res.exit_code == 2 and "give --steps or --epochs, not both" in res.output
    res = runner.invoke(cli.app, ["train", str(write_spec()), "--strategy", "zero3"])
    assert res.exit_code == 2 and "unknown strategy 'zero3'; use ddp or fsdp" in res.output


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
    ckpt = out / "checkpoints" / "step_000000003.safetensors"
    assert res.exit_code == 1
    assert res.output == (f"error: '{ckpt}' does not fit this spec: the weights were trained with hidden=16 (this spec "
                          f"has hidden=8): pass --set hidden=16 or use the run folder {out}\n")
    res = runner.invoke(cli.app, ["train", str(spec), "--out", str(out), "--resume", "--set", "train.optimizer.lr=0.5"])
    assert res.exit_code == 1
    assert "cannot resume" in res.output and "exactly: the training configuration changed (optimizer)" in res.output
    res = runner.invoke(cli.app, ["train", str(spec), "--out", str(out), "--resume", "--steps", "5"])
    assert res.exit_code == 0 and "(step 3)" in res.output and "stopped after 5 steps" in res.output


CSV_SPEC = """\
nngraph: 1
name: csv_mlp
inputs:
  x: {shape: [batch, 3], dtype: float32}
graph:
  - {name: head, op: linear, in: x, out: 2}
outputs: {logits: head}
train:
  batch_size: 4
  steps: 3
  log: {every: 1, tensorboard: false, plot: false, progress: false}
"""


def _csv(path, bad_line: int | None = None):
    rows = ["a,b,c,label"] + [f"0.{i},0.{i + 1},0.{i + 2},{i % 2}" for i in range(1, 31)]
    if bad_line:
        rows[bad_line - 1] = "0.1,zz,0.3,1"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_bad_data_row_with_two_processes_is_one_line_and_exit_1(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(CSV_SPEC)
    bad = _csv(tmp_path / "bad.csv", bad_line=17)
    proc = nngraph(str(spec), "--data", str(bad), "--nproc-per-node", "2", "--out", str(tmp_path / "run"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert (out, err) == ("", f"error: {bad}:17: column 'b' value 'zz' is not a number\n")


def test_an_error_inside_the_workers_is_reported_once_as_its_own_message(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(CSV_SPEC)
    data, out_dir = _csv(tmp_path / "ok.csv"), tmp_path / "run"
    finish(nngraph(str(spec), "--data", str(data), "--out", str(out_dir), "-q"))
    # resuming a 1-process checkpoint with 2 processes fails in each worker (the checkpoint is read there)
    proc = nngraph(str(spec), "--data", str(data), "--out", str(out_dir), "--resume", "--nproc-per-node", "2")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and out == ""
    ckpt = out_dir / "checkpoints" / "step_000000003.safetensors"
    assert err == (f"error: '{ckpt}' was written by 1 processes, this run has 2: resume with the same "
                   "--nproc-per-node\n")
