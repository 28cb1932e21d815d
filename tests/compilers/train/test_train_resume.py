"""Killed runs resume exactly; a kill during a checkpoint write is harmless; DDP on 2 processes == 1 process with
the doubled batch; resuming refuses pickled checkpoints. Each run is a real `nngraph train` subprocess."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from train_helpers import ENV, finish, logged_steps, max_diff, nngraph, read_jsonl, train_curve, weights


@pytest.fixture(scope="module")
def uninterrupted(mlp_spec: Path) -> Path:
    out = mlp_spec.parent / "full"
    finish(nngraph(str(mlp_spec), "--out", str(out), "-q"))
    return out


def test_a_run_killed_at_a_random_step_resumes_to_the_same_weights(mlp_spec, uninterrupted):
    kill_at = random.Random().randint(8, 50)
    out = mlp_spec.parent / f"killed_{kill_at}"
    proc = nngraph(str(mlp_spec), "--out", str(out), "-q")
    while proc.poll() is None and logged_steps(out / "metrics.jsonl") < kill_at:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before step {kill_at}"
    text = finish(nngraph(str(mlp_spec), "--out", str(out), "--resume"))
    assert "resumed from" in text, text
    assert max_diff(weights(out), weights(uninterrupted)) <= 1e-6, f"killed at step {kill_at}"
    # the log reads as one run: the steps after the checkpoint were dropped and redone
    full = [(r["step"], r["split"], round(r["loss"], 6)) for r in read_jsonl(uninterrupted / "metrics.jsonl")]
    again = [(r["step"], r["split"], round(r["loss"], 6)) for r in read_jsonl(out / "metrics.jsonl")]
    assert again == full, f"killed at step {kill_at}"


def test_a_kill_while_a_checkpoint_is_written_never_leaves_a_loadable_partial_file(mlp_spec, uninterrupted):
    from nngraph.compilers.state import checkpoint as ck

    out = mlp_spec.parent / "killed_in_write"
    env = {**ENV, "NNGRAPH_CHECKPOINT_WRITE_DELAY": "2"}  # each file is one chunk: 2 s between write and rename
    proc = nngraph(str(mlp_spec), "--out", str(out), "-q", "--set", "train.checkpoint.every=20", env=env)
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
    text = finish(nngraph(str(mlp_spec), "--out", str(out), "--resume", "--set", "train.checkpoint.every=20"))
    assert f"resumed from {folder / ck.step_name(20)} (step 20)" in text
    assert max_diff(weights(out), weights(uninterrupted)) <= 1e-6
    assert not list(folder.glob(".*.tmp"))  # cleaned up by the next successful checkpoint


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_resume_refuses_a_pickled_checkpoint_without_running_it(mlp_spec, tmp_path):
    from nngraph.compilers.train import train

    out = tmp_path / "run"
    train(mlp_spec, out=out, steps=7, quiet=True)
    marker = tmp_path / "pwned"
    torch.save({"model": _Evil(str(marker))}, out / "checkpoints" / "step_000000099.safetensors")
    lines: list[str] = []
    s = train(mlp_spec, out=out, steps=8, resume=True, echo=lines.append)
    assert any("step_000000099.safetensors' is a pickle / torch.save file, not an nngraph checkpoint: refusing to "
               "load it (unpickling can run arbitrary code; checkpoints are safetensors)" in line for line in lines)
    assert any(line.endswith("(step 7)") for line in lines), lines  # fell back to the last good checkpoint
    assert s["steps"] == 8 and not marker.exists()


def test_two_ddp_processes_give_the_loss_curve_of_one_process_with_twice_the_batch(mlp_spec):
    no_dropout = ["--set", "p=0.0", "--steps", "15", "--set", "train.checkpoint.every=100"]
    one, two = mlp_spec.parent / "one", mlp_spec.parent / "two"
    single = nngraph(str(mlp_spec), "--out", str(one), "-q", "--set", "train.batch_size=16", *no_dropout)
    finish(single)
    text = finish(nngraph(str(mlp_spec), "--out", str(two), "--nproc-per-node", "2", "--set", "train.batch_size=8",
                          *no_dropout))
    assert "on 2 processes" in text
    a, b = train_curve(one), train_curve(two)
    assert len(a) == len(b) == 15
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, (a, b)
    assert max_diff(weights(one), weights(two)) <= 1e-5
    assert json.loads((two / "summary.json").read_text())["steps"] == 15
