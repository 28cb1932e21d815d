"""Real learning on the built-in datasets (the acceptance runs of `nngraph train`; CPU seconds each)."""

from __future__ import annotations

import math

import pytest

from nngraph.compilers.train import train

from train_helpers import ROOT, read_jsonl

QUIET = ["train.log.tensorboard=false", "train.log.plot=false"]


def test_mlp_on_digits_reaches_95_percent_test_accuracy(tmp_path):
    cfg = tmp_path / "digits.yaml"  # the train: section from a --config file, for a spec without one
    cfg.write_text("train:\n  data: digits\n  batch_size: 32\n  steps: 300\n"
                   "  optimizer: {type: adamw, lr: 3.0e-3}\n  schedule: cosine\n"
                   "  log: {tensorboard: false, plot: false}\n")
    s = train(ROOT / "specs/mlp.yaml", out=tmp_path / "run", overrides=["d_in=64", "hidden=64"], config=cfg,
              quiet=True)
    assert s["task"] == "classification" and s["steps"] == 300
    assert s["test"]["accuracy"] >= 0.95, s["test"]


def test_cnn_on_digits_reaches_95_percent_test_accuracy(tmp_path):
    s = train(ROOT / "specs/cnn_digits.yaml", out=tmp_path / "run", epochs=6, overrides=QUIET, quiet=True)
    assert s["test"]["accuracy"] >= 0.95, s["test"]
    assert s["steps"] == 6 * (1258 // 64)  # epochs of the 1,258 training images in batches of 64


def test_gcn_on_karate_club_with_four_labelled_nodes_classifies_85_percent_of_the_rest(tmp_path):
    s = train(ROOT / "specs/gcn.yaml", out=tmp_path / "run", data="karate", steps=60,
              overrides=QUIET + ["classes=2", "train.optimizer.lr=0.01"], quiet=True)
    assert s["task"] == "node_classification"
    assert s["test"]["accuracy"] >= 0.85, s["test"]  # 30 unlabelled members


def test_char_gpt_on_real_shakespeare_goes_from_ln_vocab_to_below_1_7_nats(tmp_path):
    # the bundled shakespeare.txt: 111,592 characters, 61 distinct; about 70 CPU seconds on one thread
    out = tmp_path / "run"
    s = train(ROOT / "specs/gpt_char.yaml", out=out, steps=1200, data="shakespeare",
              overrides=QUIET + ["vocab=61", "train.threads=1", "train.eval={every: 600, batches: 20}"], quiet=True)
    val = [r for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "val"]
    assert val[0]["step"] == 0 and val[0]["loss"] == pytest.approx(math.log(61), abs=0.35)
    assert val[-1]["step"] == 1200 and val[-1]["loss"] < 1.7, val
    assert s["val"]["perplexity"] == pytest.approx(math.exp(s["val"]["loss"]))
