"""Checkpoints written before the two trainers became one still resume exactly, and new ones keep their layout.

``data/main_graph_step3.safetensors`` and ``data/main_networks_step3.safetensors`` were written by main at commit
4226a24 (loop.py ``Trainer`` and multi.py ``NetTrainer``) at step 3 of the runs below; resuming them must end with
the same weights, bit for bit, as a run that was never interrupted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from nngraph.compilers.state import checkpoint as ck
from nngraph.compilers.train.config import load_run_config
from nngraph.compilers.train.session import train_run
from train_helpers import SEEDS, SPEC, weights

DATA = Path(__file__).parent / "data"
SETS = ["train.log.plot=false", "train.log.tensorboard=false", "train.log.progress=false", "train.checkpoint.keep=10",
        "train.checkpoint.every=3", "train.eval.every=3", "hidden=8"]
RUNS = {"graph": (None, ["train.precision=fp16"]), "networks": (SEEDS / "wgan_2d.yaml", [])}


def _config(kind: str, tmp_path: Path):
    spec, extra = RUNS[kind]
    if spec is None:
        spec = tmp_path / "mlp.yaml"
        spec.write_text(SPEC)
    return load_run_config(spec, [*SETS, *extra], steps=6)


def _resume_from_main(kind: str, tmp_path: Path) -> Path:
    out = tmp_path / "resumed"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(DATA / f"main_{kind}_step3.safetensors", out / "checkpoints" / ck.step_name(3))
    said: list[str] = []
    summary = train_run(_config(kind, tmp_path), out, True, said.append, False)
    assert summary["steps"] == 6 and f"resumed from {out / 'checkpoints' / ck.step_name(3)} (step 3)" in said
    return out


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])]


def test_a_one_graph_checkpoint_written_before_the_merge_resumes_exactly(tmp_path):
    """fp16 on the CPU: weights, Adam moments, the scaler, the schedule record and dropout's RNG all come back."""
    full = tmp_path / "full"
    train_run(_config("graph", tmp_path), full, False, print, True)
    _assert_same_weights(_resume_from_main("graph", tmp_path), full)


def test_a_networks_checkpoint_written_before_the_merge_resumes_exactly(tmp_path):
    """wgan: both networks, both optimizers (stored per name) and the RNGs come back."""
    full = tmp_path / "full"
    train_run(_config("networks", tmp_path), full, False, print, True)
    _assert_same_weights(_resume_from_main("networks", tmp_path), full)


def test_new_checkpoints_have_the_layout_of_the_old_ones(tmp_path):
    """The same state fields and tensor names as main's checkpoints; the run record only gains counters."""
    for kind in RUNS:
        out = tmp_path / kind
        train_run(_config(kind, tmp_path), out, False, print, True)
        new, old = ck.read(out / "checkpoints" / ck.step_name(3)), ck.read(DATA / f"main_{kind}_step3.safetensors")
        assert set(new.state) == set(old.state), kind
        assert set(new.tensors) == set(old.tensors), kind
        assert set(old.state["run"]) <= set(new.state["run"]), kind
        assert new.state["rng"].keys() == old.state["rng"].keys() and new.state["world"] == old.state["world"] == 1
    graph = ck.read(tmp_path / "graph" / "checkpoints" / ck.step_name(3)).state
    assert {"optimizer", "scheduler", "scaler", "lora"} <= set(graph) and "optimizers" not in graph
    assert graph["scheduler"].keys() == ck.read(DATA / "main_graph_step3.safetensors").state["scheduler"].keys()
    nets = ck.read(tmp_path / "networks" / "checkpoints" / ck.step_name(3))
    assert set(nets.state["optimizers"]) == {"generator", "critic"} and "task" in nets.state
    assert {k.split("/")[1] for k in nets.tensors if k.startswith("optim/")} == {"generator", "critic"}
