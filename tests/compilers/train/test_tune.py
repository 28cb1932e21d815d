"""``nngraph tune``: Optuna trials of ``nngraph train`` in a resumable SQLite study, pruning from val metrics,
the best trial's run folder; ``--space`` mistakes are located usage errors."""

from __future__ import annotations

import json

import optuna  # the dev extra has it: a missing one is a failure, not a skip
import pytest
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.train.tune import PruneReporter
from nngraph.tune_space import SpaceError, parse_space

runner = CliRunner()
SPACE = ["--space", "train.optimizer.lr=loguniform(1e-3,3e-2)", "--space", "vars.hidden=choice(8,16)"]


@pytest.mark.parametrize("text, col, words", [
    ("lr=logunifrm(1e-4,1e-2)", 4, "unknown distribution 'logunifrm'"),
    ("lr=uniform(2, 1)", 12, "lo must be below hi"),
    ("lr=loguniform(0, 1)", 15, "lo > 0"),
    ("n=int(1.5, 3)", 7, "whole numbers"),
    ("lr 0.1", 1, "expected KEY=DIST(ARGS)"),
    ("d=choice([1, 2])", 10, "plain values"),
])
def test_space_mistakes_point_at_their_character(text, col, words):
    with pytest.raises(SpaceError) as err:
        parse_space(text)
    assert err.value.col == col and words in str(err.value)


def test_a_space_value_becomes_the_set_override():
    assert parse_space("vars.d_model=choice(64,128)").override(128) == "d_model=128"
    assert parse_space("train.optimizer.lr=loguniform(1e-4,1e-2)").override(0.003) == "train.optimizer.lr=0.003"


def test_a_bad_space_is_a_usage_error_without_traceback(tmp_path, write_spec):
    res = runner.invoke(cli.app, ["tune", str(write_spec()), "--space", "lr=uniform(1)", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    text = " ".join(res.output.replace("│", " ").split())  # the usage box wraps lines
    assert "--space 'lr=uniform(1)':12: uniform takes two numbers" in text


def test_the_reporter_prunes_a_trial_worse_than_the_median():
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    for v in (1.0, 1.2):
        study.add_trial(optuna.trial.create_trial(value=v, params={}, distributions={},
                                                  intermediate_values={2: v, 4: v}))
    good = PruneReporter(study.ask(), "loss")
    good.scalars("val", 2, {"loss": 0.9})  # better than the median 1.1 of the others at step 2: goes on
    good.scalars("val", 4, {"loss": 1.0})  # the pruner compares the trial's best so far (0.9)
    trial = study.ask()
    bad = PruneReporter(trial, "loss")
    bad.scalars("train", 2, {"loss": 5.0})  # train numbers are not reported
    with pytest.raises(optuna.TrialPruned):
        bad.scalars("val", 2, {"loss": 1.5})
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {2: 1.5}


def test_tune_runs_trials_resumes_the_study_and_names_the_best_run(tmp_path, write_spec):
    spec, out = write_spec(), tmp_path / "tune"
    args = ["tune", str(spec), *SPACE, "--out", str(out), "--steps", "4", "--set", "train.eval.every=2"]
    res = runner.invoke(cli.app, [*args, "--trials", "3"])
    assert res.exit_code == 0, res.output
    assert "train.optimizer.lr" in res.output and "best: trial" in res.output
    res = runner.invoke(cli.app, [*args, "--trials", "1"])  # the same study: one more trial
    assert res.exit_code == 0, res.output
    result = json.loads((out / "trials.json").read_text())
    assert [t["number"] for t in result["trials"]] == [0, 1, 2, 3]
    done = [t for t in result["trials"] if t["state"] == "COMPLETE"]
    for t in done:  # each value is its run's own val loss, with the trial's values applied
        summary = json.loads(open(t["out"] + "/summary.json").read())
        assert summary["val"]["loss"] == t["value"] and summary["steps"] == 4
        record = json.loads(open(t["out"] + "/run.json").read())
        assert f"hidden={t['params']['vars.hidden']}" in record["overrides"]
    best = result["best"]
    assert best["value"] == min(t["value"] for t in done)
    assert (out / f"trial_{best['number']:04d}" / "model.safetensors").is_file()
    assert (out / "tune.png").read_bytes()[:4] == b"\x89PNG" and (out / "study.db").is_file()


def test_parallel_workers_share_one_study_without_losing_or_repeating_a_trial(tmp_path, write_spec):
    spec, out = write_spec(), tmp_path / "tune"
    res = runner.invoke(cli.app, ["tune", str(spec), *SPACE, "--out", str(out), "--steps", "3", "--trials", "4",
                                  "--workers", "2", "--set", "train.eval.every=3"])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "trials.json").read_text())
    trials = result["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3]  # each number once: none lost, none run twice
    assert sorted(t["out"] for t in trials) == [str(out / f"trial_{n:04d}") for n in range(4)]
    for t in trials:
        assert t["state"] in ("COMPLETE", "PRUNED")
        record = json.loads(open(t["out"] + "/run.json").read())
        assert f"hidden={t['params']['vars.hidden']}" in record["overrides"]  # the run had its trial's values
        if t["state"] == "COMPLETE":
            summary = json.loads(open(t["out"] + "/summary.json").read())
            assert summary["val"]["loss"] == t["value"] and summary["steps"] == 3
    done = [t for t in trials if t["state"] == "COMPLETE"]
    assert result["best"]["value"] == min(t["value"] for t in done)
    rows = [line.split() for line in res.output.splitlines() if line.strip()[:1].isdigit() or line.strip()[:1] == "*"]
    assert sorted(int(r[0].lstrip("*")) for r in rows) == [0, 1, 2, 3]  # the table: one row per trial
    study = optuna.load_study(study_name=spec.stem, storage=f"sqlite:///{out / 'study.db'}")
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "no two trials ran at the same time"
