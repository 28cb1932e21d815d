"""Shared constants for the trainer tests (imported by name: the tests folder is not a package)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]


#: overrides for quiet, single-threaded runs of the zoo's seed specs
QUIET = ["train.threads=1", "train.log.plot=false", "train.log.tensorboard=false", "train.log.progress=false"]
SEEDS = ROOT / "specs" / "seeds"


def run_quiet(spec: Path, out: Path, *sets: str, steps: int, **kw):
    """``nngraph train`` on ``spec`` with :data:`QUIET` and ``sets`` as --set overrides; returns its summary."""
    from nngraph.compilers.train import train

    return train(spec, out=out, overrides=[*QUIET, *sets], steps=steps, quiet=True, **kw)


def read_jsonl(path: Path) -> list[dict]:
    """The records of a metrics.jsonl file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


#: an MLP with dropout on the digits: 60 steps, cosine schedule, checkpoints every 7 steps
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
#: four alike decoder-ish blocks with dropout (checkpointing must replay the same dropout mask)
BLOCKS_SPEC = """\
nngraph: 1
name: ckpt
inputs:
  x: {shape: [batch, 64], dtype: float32}
blocks:
  layer:
    inputs: [x]
    nodes:
      - {name: up, op: linear, in: x, out: 96}
      - {name: act, op: gelu, in: up}
      - {name: drop, op: dropout, in: act, p: 0.3}
      - {name: down, op: linear, in: drop, out: 64}
      - {name: out, op: add, in: [x, down]}
    outputs: [out]
graph:
  - {name: h, block: layer, repeat: 4, in: x}
  - {name: head, op: linear, in: h, out: 10}
outputs: {logits: head}
train: {data: digits, batch_size: 8, steps: 3}
"""
#: BLOCKS_SPEC on 2 processes with FSDP (the conftest's ``blocks_fsdp_run``): each block copy its own unit, and
#: checkpointed; 2 x batch 8 is one process's batch 16
BLOCKS_FSDP_ARGS = ["--strategy", "fsdp", "--steps", "4", "--set", "train.batch_size=8", "--set", "train.log.every=1",
                    "--set", "train.checkpoint.every=2", "--set", "train.activation_checkpointing=true"]

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def nngraph(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    """``nngraph train ARGS`` as a subprocess of the repository root, one torch thread."""
    return subprocess.Popen([sys.executable, "-m", "nngraph", "train", *args], cwd=ROOT, env=env or ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc: subprocess.Popen) -> str:
    """Wait for the run; it must succeed; its stdout."""
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out


def logged_steps(path: Path) -> int:
    try:
        return max((r["step"] for r in read_jsonl(path) if r["split"] == "train"), default=0)
    except (OSError, ValueError):
        return 0


def weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def train_curve(out: Path) -> list[float]:
    """The logged training losses of a run."""
    return [r["loss"] for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train"]
