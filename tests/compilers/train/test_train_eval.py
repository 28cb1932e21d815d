"""Evaluation every N steps, the best checkpoint, early stopping, and what the summary reports."""

from __future__ import annotations

import torch

from nngraph.compilers.torch.weights import load_weights
from nngraph.compilers.state import checkpoint as ck
from nngraph.compilers.train import train

from train_helpers import read_jsonl


def test_evaluations_happen_every_n_steps_and_at_the_end(write_spec, tmp_path):
    out = tmp_path / "run"
    train(write_spec(), out=out, steps=10, overrides=["train.eval.every=4"], quiet=True)
    val = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "val"]
    assert val == [0, 4, 8, 10]


def test_early_stopping_stops_after_patience_evaluations_without_improvement(write_spec, tmp_path):
    out = tmp_path / "run"
    s = train(write_spec(), out=out, steps=50, quiet=True,
              overrides=["train.optimizer.lr=0.0", "train.eval.every=2", "train.early_stopping={patience: 3}"])
    assert s["steps"] == 8 and s["stopped"] == "early stop: no accuracy improvement in 3 evaluations"
    assert s["best_step"] == 2  # with lr 0 nothing improves after the first evaluation
    assert ck.latest(out / "checkpoints").state["run"]["step"] == 8  # the stop is checkpointed


def test_the_best_evaluation_is_kept_and_the_test_split_uses_it(write_spec, tmp_path):
    out = tmp_path / "run"
    s = train(write_spec(), out=out, steps=40, quiet=True,
              overrides=["train.optimizer.lr=0.2", "train.eval={every: 5, metric: loss}"])  # too high: noisy
    val = {r["step"]: r["loss"] for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "val" and r["step"]}
    best_step = min(val, key=val.get)
    assert s["best_step"] == best_step and s["best"] == val[best_step] and s["metric"] == "loss"
    best = ck.read(out / "checkpoints" / "best.safetensors")
    assert best.state["run"]["step"] == best_step
    exported = load_weights(out / "best_model.safetensors").tensors
    assert all(torch.equal(exported[k], v) for k, v in best.group("model").items())
    assert best_step < 40 and s["test_weights"] == f"best (step {best_step})"
    final = load_weights(out / "model.safetensors").tensors
    assert not torch.equal(final["head.weight"], exported["head.weight"])
