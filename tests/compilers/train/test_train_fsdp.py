"""FSDP (train.distributed: fsdp, --strategy fsdp) on 2 CPU processes (gloo): the loss curve of 1 process with the
doubled batch, full (gathered) weights in checkpoints and model.safetensors, and exact resume. Real subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train_helpers import finish, max_diff, nngraph, train_curve, weights

#: no dropout: 1 process and 2 draw different dropout masks
EXACT = ["--set", "p=0.0", "--steps", "15", "--set", "train.checkpoint.every=100"]


@pytest.fixture(scope="module")
def fsdp_run(mlp_spec: Path) -> tuple[Path, str]:
    out = mlp_spec.parent / "fsdp"
    text = finish(nngraph(str(mlp_spec), "--out", str(out), "--nproc-per-node", "2", "--strategy", "fsdp",
                          "--set", "train.batch_size=8", *EXACT))
    return out, text


def test_two_fsdp_processes_give_the_loss_curve_of_one_process_with_twice_the_batch(mlp_spec, fsdp_run):
    two, text = fsdp_run
    assert "on 2 processes (FSDP)" in text
    one = mlp_spec.parent / "one"
    finish(nngraph(str(mlp_spec), "--out", str(one), "-q", "--set", "train.batch_size=16", *EXACT))
    a, b = train_curve(one), train_curve(two)
    assert len(a) == len(b) == 15
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, (a, b)
    assert max_diff(weights(one), weights(two)) <= 1e-5


def test_fsdp_weights_and_checkpoints_are_full_and_load_in_one_plain_process(mlp_spec, fsdp_run):
    from nngraph.compilers.torch import compile_spec, load_state_dict, state_dict_for
    from nngraph.compilers.torch.weights import load_weights
    from nngraph.compilers.state import checkpoint as ck

    out, _ = fsdp_run
    plain = compile_spec(mlp_spec, ["p=0.0"])
    shapes = {k: tuple(v.shape) for k, v in state_dict_for(plain).items()}
    final = load_weights(out / "model.safetensors").tensors
    assert {k: tuple(v.shape) for k, v in final.items()} == shapes  # gathered, not 1/2 shards
    assert load_state_dict(plain, final).ok
    ckpt = ck.read(ck.step_files(out / "checkpoints")[0][1])
    assert ckpt.state["world"] == 2 and ckpt.state["run"]["step"] == 15
    assert max_diff(ckpt.group("model"), final) == 0.0
    # the optimizer state is whole too: AdamW moments shaped like their parameters
    sizes = sorted(tuple(v.shape) for k, v in ckpt.group("optim").items() if k.endswith("/exp_avg"))
    assert sizes == sorted(shapes.values())
    x = torch.rand(4, 64)
    assert plain(x=x).shape == (4, 10)


def test_an_fsdp_run_resumes_exactly_from_its_checkpoint(mlp_spec):
    args = [str(mlp_spec), "--nproc-per-node", "2", "--strategy", "fsdp", "--set", "train.batch_size=8",
            "--set", "train.schedule=constant", "--set", "train.checkpoint.every=5"]  # dropout on: RNG per rank
    full, cut = mlp_spec.parent / "fsdp_full", mlp_spec.parent / "fsdp_cut"
    finish(nngraph(*args, "--out", str(full), "--steps", "12", "-q"))
    finish(nngraph(*args, "--out", str(cut), "--steps", "5", "-q"))
    text = finish(nngraph(*args, "--out", str(cut), "--steps", "12", "--resume"))
    assert f"resumed from {cut / 'checkpoints' / 'step_000000005.safetensors'} (step 5)" in text
    assert max_diff(weights(cut), weights(full)) <= 1e-6
    assert train_curve(cut) == pytest.approx(train_curve(full), abs=1e-6)


def test_fsdp_with_fp16_uses_a_scaler_all_ranks_agree_on_and_learns(mlp_spec):
    from nngraph.compilers.state import checkpoint as ck

    out = mlp_spec.parent / "fsdp_fp16"
    proc = nngraph(str(mlp_spec), "--out", str(out), "--nproc-per-node", "2", "--strategy", "fsdp", "-q",
                   "--set", "train.batch_size=8", "--set", "train.precision=fp16", "--steps", "30",
                   "--set", "train.scaler.growth_interval=4")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0 and err == "", err  # no warnings either
    ckpt = ck.latest(out / "checkpoints")
    assert ckpt.state["scaler"]["scale"] != 65536.0 or ckpt.state["scaler"]["_growth_tracker"] > 0
    curve = train_curve(out)
    assert sum(curve[-5:]) < 0.85 * sum(curve[:5]), curve
