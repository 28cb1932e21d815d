"""The train: section: every mistake is an error at its line:col, from `validate`, --config files, --set and flags."""

from __future__ import annotations

import textwrap

import pytest

from nngraph.compilers.train.config import load_run_config
from nngraph.errors import SpecError

HEAD = """\
nngraph: 1
name: t
vars: {lr: 0.01, width: 3}
inputs:
  x: {shape: [batch, 4], dtype: float32}
graph:
  - {name: head, op: linear, in: x, out: "${width}"}
outputs: {logits: head}
"""


def spec(train: str) -> str:
    return HEAD + "train:\n" + textwrap.indent(textwrap.dedent(train).strip("\n"), "  ") + "\n"


def test_a_valid_section_fills_defaults_and_resolves_expressions(spec_file):
    path = spec_file(spec("""
        data: digits
        optimizer: {type: sgd, lr: "${lr * 2}", momentum: 0.9}
        schedule: cosine
        steps: 10
    """))
    run = load_run_config(path)
    v = run.values
    assert v["data"]["builtin"] == "digits" and v["data"]["val_fraction"] == 0.1
    assert v["optimizer"] == {"type": "sgd", "lr": 0.02, "weight_decay": None, "l1": 0.0, "betas": [0.9, 0.999],
                              "eps": 1e-8, "momentum": 0.9, "nesterov": False}
    assert v["schedule"] == {"type": "cosine", "warmup": 0, "min_lr": 0.0}
    assert v["lora"] is None and v["early_stopping"] is None and v["steps"] == 10


@pytest.mark.parametrize("train, line, col, message", [
    ("task: clasification", 10, 9, "train.task: expected one of auto, classification"),
    ("bogus: 1", 10, 3, "unknown key 'bogus' in 'train'"),
    ("data: {builtin: digit}", 10, 19, "train.data.builtin: expected one of digits, karate"),
    ("data: {val_fraction: 2}", 10, 24, "train.data.val_fraction must be <= 0.9, got 2"),
    ("optimizer: {lr: fast}", 10, 19, "train.optimizer.lr: expected a number, got a string 'fast'"),
    ("optimizer: {betas: [0.9]}", 10, 22, "train.optimizer.betas: expected two numbers [a, b], got [0.9]"),
    ("batch_size: 0", 10, 15, "train.batch_size must be >= 1, got 0"),
    ("grad_accum: 1.5", 10, 15, "train.grad_accum: expected an integer, got a number 1.5"),
    ("output: logit", 10, 11, "train.output 'logit' is not an output of the graph"),
    ("inputs: {image: x}", 10, 11, "train.inputs: 'image' is not an input of the graph"),
    ("loss: {aux: {'*.aux_loss': 0.1}}", 10, 15, "train.loss.aux: '*.aux_loss' matches no graph output or node output"),
    ("lora: {rank: 0}", 10, 16, "train.lora.rank must be >= 1, got 0"),
    ("log: {tensorboard: maybe}", 10, 22, "train.log.tensorboard: expected true, false or auto, got a string 'maybe'"),
    ("optimizer: {lr: '${nope * 2}'}", 10, 19, "train.optimizer.lr: unknown"),
])
def test_a_bad_value_is_reported_at_its_line_and_column(diagnose, train, line, col, message):
    _, errors = diagnose(spec(train))
    assert len(errors) == 1, errors
    got_line, got_col, got_message, _ = errors[0]
    assert (got_line, got_col) == (line, col)
    assert got_message.startswith(message), got_message


def test_hints_name_the_closest_choice(diagnose):
    _, errors = diagnose(spec("task: clasification"))
    assert errors[0][3] == "did you mean 'classification'?"
    _, errors = diagnose(spec("output: logit"))
    assert errors[0][3] == "did you mean 'logits'? outputs: logits"


def test_every_error_of_the_section_is_reported_in_one_run(diagnose):
    _, errors = diagnose(spec("""
        steps: 10
        epochs: 2
        distributed: zero
        device: cpu
        schedule: {min_lr: 1.0}
    """))
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (12, 16, "train.distributed.strategy: expected one of ddp, fsdp, got 'zero'"),
        (11, 11, "give train.steps or train.epochs, not both"),
        (14, 22, "train.schedule.min_lr must be <= train.optimizer.lr, got 1.0 > 0.001"),
    ]


def test_a_section_that_is_not_a_mapping_is_one_error(diagnose):
    _, errors = diagnose(HEAD + "train: 5\n")
    assert [(e[0], e[1], e[2]) for e in errors] == [(9, 8, "'train' must be a mapping, got an integer")]


def test_a_config_file_is_merged_over_the_spec_and_checked_at_its_own_lines(spec_file, tmp_path):
    path = spec_file(spec("optimizer: {type: adamw, lr: 0.1}\nsteps: 5"))
    cfg = tmp_path / "train.yaml"
    cfg.write_text("train:\n  optimizer: {lr: 0.5}\n  batch_size: -3\n")
    with pytest.raises(SpecError) as err:
        load_run_config(path, config=cfg)
    (d,) = err.value.diagnostics
    assert (d.pos.file, d.pos.line, d.pos.col) == (str(cfg), 3, 15)
    assert d.message == "train.batch_size must be >= 1, got -3"
    cfg.write_text("optimizer: {lr: 0.5}\n")  # a bare section works too
    v = load_run_config(path, config=cfg).values
    assert v["optimizer"]["type"] == "adamw" and v["optimizer"]["lr"] == 0.5 and v["steps"] == 5


def test_a_config_file_and_set_read_yaml_1_2_exponent_floats_as_numbers(spec_file, tmp_path):
    path = spec_file(spec("optimizer: {type: adamw, lr: 1e-2}\nsteps: 5"))
    assert load_run_config(path).values["optimizer"]["lr"] == 1e-2
    cfg = tmp_path / "train.yaml"
    cfg.write_text("optimizer: {lr: 3e-4, weight_decay: 1E-2}\n")
    v = load_run_config(path, config=cfg).values
    assert v["optimizer"]["lr"] == 3e-4 and v["optimizer"]["weight_decay"] == 1e-2
    assert load_run_config(path, ["train.optimizer.lr=1e-5"]).values["optimizer"]["lr"] == 1e-5


def test_set_overrides_and_flags_are_checked_and_reported_where_they_were_given(spec_file):
    path = spec_file(spec("optimizer: adamw\nepochs: 3"))
    run = load_run_config(path, ["train.optimizer.lr=0.2", "width=5"], steps=7, seed=3)
    v = run.values
    assert v["optimizer"]["type"] == "adamw" and v["optimizer"]["lr"] == 0.2
    assert v["steps"] == 7 and v["epochs"] is None and v["seed"] == 3  # --steps replaces the spec's epochs
    assert run.graph.nodes["head"].params["out"] == 5
    with pytest.raises(SpecError) as err:
        load_run_config(path, ["train.batch_size=zero"])
    (d,) = err.value.diagnostics
    assert str(d.pos) == "--set train.batch_size=zero"
    assert d.message == "train.batch_size: expected an integer, got a string 'zero'"


def test_data_flag_picks_a_builtin_or_a_file(spec_file, tmp_path):
    path = spec_file(spec("data: {path: missing.csv, label_column: y}"))
    v = load_run_config(path, data="karate").values["data"]
    assert v["builtin"] == "karate" and v["path"] is None and v["label_column"] == "y"
    f = tmp_path / "d.csv"
    f.write_text("1,2\n")
    v = load_run_config(path, data=str(f)).values["data"]
    assert v["builtin"] is None and v["path"] == str(f.resolve())


def test_validate_command_reports_train_errors_as_file_line_col(spec_file):
    import subprocess
    import sys
    from pathlib import Path

    path = spec_file(spec("optimizer: {type: adamm}"))
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-m", "nngraph", "validate", str(path)], capture_output=True, text=True,
                          cwd=root)
    assert proc.returncode == 1
    assert f"{path}:10:21: error: train.optimizer.type: expected one of sgd, adam, adamw, got 'adamm'" in proc.stderr
    assert "hint: did you mean 'adam'?" in proc.stderr
