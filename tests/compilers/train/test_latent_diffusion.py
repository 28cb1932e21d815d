"""Task latent_diffusion (compilers/train/tasks/latent_diffusion.py) on specs/seeds/latent_diffusion.yaml: the VAE
stage lowers the negative ELBO, the denoiser's epsilon loss on the frozen VAE's digit latents falls clearly,
sampling in latent space decodes to images of the data's shape, checkpoints hold every network and a
resumed run (across the stage boundary) ends exactly like an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nngraph.compilers.state import checkpoint as ck
from nngraph.compilers.train.config import load_run_config
from nngraph.compilers.train.distributed import Dist
from nngraph.compilers.train.tasks.latent_diffusion import LatentDiffusionTask
from nngraph.compilers.train.loop import Trainer
from nngraph.compilers.train.session import train_run
from nngraph.errors import SpecError
from train_helpers import QUIET, run_quiet

SPEC = Path(__file__).resolve().parents[3] / "specs" / "seeds" / "latent_diffusion.yaml"
#: the spec at its small sizes, a few steps each stage
SMALL = ["base=8", "hidden=8", "groups=2", "heads=2", "context_dim=8", "train.batch_size=16",
         "train.latent.vae_steps=6", "train.checkpoint.every=4", "train.eval.every=4", "train.eval.batches=1",
         "train.diffusion.steps=50"]




def run(out: Path, *sets: str, steps: int, **kw):
    return run_quiet(SPEC, out, *sets, steps=steps, **kw)


def test_vae_stage_then_denoiser_loss_falls_clearly_on_digit_latents(tmp_path):
    from train_helpers import read_jsonl

    summary = run(tmp_path, "train.latent.vae_steps=150", "train.log.every=10", "train.eval.every=150", steps=300)
    recs = read_jsonl(tmp_path / "metrics.jsonl")
    train_recs = [r for r in recs if r["split"] == "train"]
    vae = [r["vae_loss"] for r in train_recs if "vae_loss" in r]
    eps = [r["loss"] for r in train_recs if "loss" in r]
    assert len(vae) == 15 and len(eps) == 15  # stage 1 logs the ELBO only, stage 2 the epsilon loss only
    assert vae[-1] < 0.75 * vae[0]  # 64 pixels of binary cross-entropy: ~44 at the start
    # an untrained epsilon-predictor scores about E|eps|^2 = 1; after 150 steps well below
    assert eps[0] > 0.6, eps
    val = summary["val"]
    assert val["loss"] < 0.5 and val["loss"] < 0.6 * eps[0], (eps, val)
    assert summary["best_step"] == 300  # the best (lowest) denoiser validation loss is the last one


def test_sampling_decodes_latents_to_images_of_the_data_shape(tmp_path):
    cfg = load_run_config(SPEC, [*QUIET, *SMALL], steps=8)
    tr = Trainer(cfg, None, tmp_path, Dist(), print)
    task = tr.task
    assert isinstance(task, LatentDiffusionTask)
    with pytest.raises(ValueError, match="sample after the VAE stage"):
        task.sample_images(2)
    for step in range(8):  # 6 VAE steps, then 2 denoiser steps (the VAE frozen, the scale measured)
        task.train_step(step)
    assert task.frozen and task.scale is not None and task.scale > 0
    assert not any(p.requires_grad for p in task.E.parameters())
    imgs = task.sample_images(5, labels=3, steps=10, sampler="ddim")
    assert imgs.shape == (5, 1, 8, 8) and torch.isfinite(imgs).all()
    assert float(imgs.min()) >= 0 and float(imgs.max()) <= 1  # the decoder's sigmoid pixels
    ddpm = task.sample_images(4, labels=[0, 1, 2, 3], steps=10, sampler="ddpm", seed=1)
    assert ddpm.shape == (4, 1, 8, 8)
    again = task.sample_images(4, labels=[0, 1, 2, 3], steps=10, sampler="ddpm", seed=1)
    assert torch.equal(ddpm, again)  # a seed reproduces the samples
    uncond = task.sample_images(4, labels=None, steps=10, seed=1)  # the null label
    assert uncond.shape == (4, 1, 8, 8) and not torch.equal(uncond, task.sample_images(4, 3, steps=10, seed=1))


def test_vae_weights_do_not_move_in_the_denoiser_stage(tmp_path):
    cfg = load_run_config(SPEC, [*QUIET, *SMALL], steps=10)
    task = Trainer(cfg, None, tmp_path, Dist(), print).task
    for step in range(7):
        task.train_step(step)
    enc = {k: v.clone() for k, v in task.E.state_dict().items()}
    den = {k: v.clone() for k, v in task.Den.state_dict().items()}
    for step in range(7, 10):
        stats = task.train_step(step)
        assert set(stats) == {"loss"}
    assert all(torch.equal(enc[k], v) for k, v in task.E.state_dict().items())
    assert any(not torch.equal(den[k], v) for k, v in task.Den.state_dict().items())


def test_checkpoints_hold_every_network_and_resume_across_the_stage_boundary_exactly(tmp_path):
    run(tmp_path / "full", *SMALL, steps=12)
    ckpt = ck.latest(tmp_path / "full" / "checkpoints")
    prefixes = {k.split("/")[0] + "/" + k.split("/")[1].split(".")[0] for k in ckpt.tensors if "/" in k}
    assert {"model/encoder", "model/decoder", "model/denoiser", "optim/vae", "optim/denoiser"} <= prefixes
    assert ckpt.state["task"]["frozen"] and ckpt.state["task"]["scale"] > 0
    for net in ("encoder", "decoder", "denoiser"):
        assert (tmp_path / "full" / f"{net}.safetensors").exists()
    for until in (4, 8):  # stopped inside the VAE stage, and inside the denoiser stage
        part = tmp_path / f"part{until}"
        cfg = load_run_config(SPEC, [*QUIET, *SMALL], steps=12)
        assert train_run(cfg, part, False, print, True, until=until)["steps"] == until
        run(part, *SMALL, steps=12, resume=True)
        a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(part / "model.safetensors")
        assert sorted(a) == sorted(b)
        assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0, until


def test_latent_shapes_must_agree_between_the_networks(tmp_path):
    decoder_z = 'z: {shape: [batch, "${latent_channels}", "${size // 2}", "${size // 2}"], dtype: float32}'
    text = SPEC.read_text()
    assert text.count(decoder_z) == 1  # the decoder's input (the denoiser's has a doc)
    bad = tmp_path / "latent_diffusion.yaml"
    bad.write_text(text.replace(decoder_z, 'z: {shape: [batch, 3, 4, 4], dtype: float32}'))
    with pytest.raises(SpecError) as err:
        run_quiet(bad, tmp_path / "out", *SMALL, steps=1)
    assert "the encoder's latent mu is [batch, 2, 4, 4] but the decoder's input is [batch, 3, 4, 4]" in str(err.value)
    assert "latent_diffusion.yaml:" in str(err.value.diagnostics[0].pos)
