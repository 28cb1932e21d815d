"""Killed runs resume exactly; a kill during a checkpoint write is harmless; DDP on 2 processes == 1 process with
the doubled batch; resuming refuses pickled checkpoints. Each run is a real `nngraph train` subprocess."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import ROOT, read_jsonl

SPEC = """\
nngraph: 1
name: mlp_dropout
vars: {hidden: 32, p: 0.2}
inputs:
  x: {shape: [batch, 64], dtype: float32}
graph:
  - {name: fc, op: linear, in: x, out: "${hidden}"}
  - {name: act, op: relu, in: fc}
  - {name: drop, op: dropout, in: act, p: "${p}"}
  - {name: head, op: linear, in: drop, out: 10}
outputs: {logits: head}
train:
  data: digits
  batch_size: 16
  steps: 60
  seed: 7
  optimizer: {type: adamw, lr: 0.01}
  schedule: {type: cosine, warmup: 5}
  checkpoint: {every: 7}
  eval: {every: 20}
  log: {every: 1, tensorboard: false, plot: false, progress: false}
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def nngraph(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nngraph", "train", *args], cwd=ROOT, env=env or ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out


def logged_steps(path: Path) -> int:
    try:
        return max((r["step"] for r in read_jsonl(path) if r["split"] == "train"), default=0)
    except (OSError, ValueError):
        return 0


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "spec.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def uninterrupted(spec: Path) -> Path:
    out = spec.parent / "full"
    finish(nngraph(str(spec), "--out", str(out), "-q"))
    return out


def test_a_run_killed_at_a_random_step_resumes_to_the_same_weights(spec, uninterrupted):
    kill_at = random.Random().randint(8, 50)
    out = spec.parent / f"killed_{kill_at}"
    proc = nngraph(str(spec), "--out", str(out), "-q")
    while proc.poll() is None and logged_steps(out / "metrics.jsonl") < kill_at:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before step {kill_at}"
    text = finish(nngraph(str(spec), "--out", str(out), "--resume"))
    assert "resumed from" in text, text
    assert max_diff(weights(out), weights(uninterrupted)) <= 1e-6, f"killed at step {kill_at}"
    # the log reads as one run: the steps after the checkpoint were dropped and redone
    full = [(r["step"], r["split"], round(r["loss"], 6)) for r in read_jsonl(uninterrupted / "metrics.jsonl")]
    again = [(r["step"], r["split"], round(r["loss"], 6)) for r in read_jsonl(out / "metrics.jsonl")]
    assert again == full, f"killed at step {kill_at}"


def test_a_kill_while_a_checkpoint_is_written_never_leaves_a_loadable_partial_file(spec, uninterrupted):
    from compilers.train import checkpoint as ck

    out = spec.parent / "killed_in_write"
    env = {**ENV, "NNGRAPH_CHECKPOINT_WRITE_DELAY": "2"}  # each file is one chunk: 2 s between write and rename
    proc = nngraph(str(spec), "--out", str(out), "-q", "--set", "train.checkpoint.every=20", env=env)
    folder = out / "checkpoints"
    while proc.poll() is None and not list(folder.glob(".step_000000040*.tmp")):
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = list(folder.glob(".step_000000040*.tmp"))
    assert partial, "the kill did not land inside the write"
    assert [p.name for _, p in ck.step_files(folder)] == [ck.step_name(20)]
    assert ck.latest(folder).state["run"]["step"] == 20
    text = finish(nngraph(str(spec), "--out", str(out), "--resume", "--set", "train.checkpoint.every=20"))
    assert f"resumed from {folder / ck.step_name(20)} (step 20)" in text
    assert max_diff(weights(out), weights(uninterrupted)) <= 1e-6
    assert not list(folder.glob(".*.tmp"))  # cleaned up by the next successful checkpoint


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_resume_refuses_a_pickled_checkpoint_without_running_it(spec, tmp_path):
    from compilers.train import train

    out = tmp_path / "run"
    train(spec, out=out, steps=7, quiet=True)
    marker = tmp_path / "pwned"
    torch.save({"model": _Evil(str(marker))}, out / "checkpoints" / "step_000000099.safetensors")
    lines: list[str] = []
    s = train(spec, out=out, steps=8, resume=True, echo=lines.append)
    assert any("step_000000099.safetensors' is a pickle / torch.save file, not an nngraph checkpoint: refusing to "
               "load it (unpickling can run arbitrary code; checkpoints are safetensors)" in line for line in lines)
    assert any(line.endswith("(step 7)") for line in lines), lines  # fell back to the last good checkpoint
    assert s["steps"] == 8 and not marker.exists()


def test_two_ddp_processes_give_the_loss_curve_of_one_process_with_twice_the_batch(spec):
    no_dropout = ["--set", "p=0.0", "--steps", "15", "--set", "train.checkpoint.every=100"]
    one, two = spec.parent / "one", spec.parent / "two"
    single = nngraph(str(spec), "--out", str(one), "-q", "--set", "train.batch_size=16", *no_dropout)
    finish(single)
    text = finish(nngraph(str(spec), "--out", str(two), "--nproc-per-node", "2", "--set", "train.batch_size=8",
                          *no_dropout))
    assert "on 2 processes" in text
    curve = lambda out: [r["loss"] for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train"]  # noqa: E731
    a, b = curve(one), curve(two)
    assert len(a) == len(b) == 15
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, (a, b)
    assert max_diff(weights(one), weights(two)) <= 1e-5
    assert json.loads((two / "summary.json").read_text())["steps"] == 15
