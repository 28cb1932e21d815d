"""Tasks over several networks (compilers/train/adversarial.py, multi.py): the GAN on the 8-Gaussian ring
learns to cover its modes, the VAE encoder/decoder pair lowers its ELBO, checkpoints hold every network and
optimizer, a resumed run ends exactly like an uninterrupted one, and the same seed gives the same weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from compilers.train import train
from compilers.train import checkpoint as ck
from compilers.train.adversarial import mode_coverage, ring_modes, sample_ring
from compilers.train.config import load_run_config
from compilers.train.multi import train_networks
from nngraph.errors import SpecError

SEEDS = Path(__file__).resolve().parents[3] / "specs" / "seeds"
QUIET = ["train.threads=1", "train.log.plot=false", "train.log.tensorboard=false", "train.log.progress=false"]


def run(spec: str, out: Path, *sets: str, steps: int, **kw):
    return train(SEEDS / spec, out=out, overrides=[*QUIET, *sets], steps=steps, quiet=True, **kw)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ----- the metric ---------------------------------------------------------------------------
def test_mode_coverage_counts_modes_with_a_quarter_of_their_share_of_close_samples():
    modes = ring_modes(8, 2.0)
    assert torch.allclose(modes[2], torch.tensor([0.0, 2.0]), atol=1e-6)
    exact = sample_ring(4000, modes, 0.05, torch.Generator().manual_seed(0))
    cov = mode_coverage(exact, modes, 0.05)
    assert cov["modes"] == 8 and cov["hq"] > 0.99 and abs(cov["min_share"] - 0.125) < 0.02
    collapsed = modes[:3].repeat(100, 1)  # every sample on 3 of the 8 modes
    assert mode_coverage(collapsed, modes, 0.05)["modes"] == 3
    far = torch.zeros(100, 2)  # the centre of the ring: 2 away from every mode
    assert mode_coverage(far, modes, 0.05) == {"modes": 0, "hq": 0, "min_share": 0.0, "dist": pytest.approx(2.0)}


# ----- learning for real ----------------------------------------------------------------------
def test_gan_on_the_8_gaussian_ring_covers_most_modes(tmp_path):
    summary = run("gan_2d.yaml", tmp_path, "train.eval.every=2000", steps=2000)
    val = summary["val"]
    # an untrained generator puts every sample near the origin, 2 away from all modes
    assert val["modes"] >= 6, val
    assert val["hq"] >= 0.5, val  # most samples within 3 std of a mode
    assert val["min_share"] >= 0.04, val  # no mode starved (uniform: 0.125)
    assert val["dist"] < 0.25, val


def test_vae_encoder_decoder_networks_lower_the_negative_elbo(tmp_path):
    summary = run("vae_networks.yaml", tmp_path, "train.eval.every=300", "train.log.every=10", steps=300)
    from train_helpers import read_jsonl

    recs = read_jsonl(tmp_path / "metrics.jsonl")
    first = next(r["loss"] for r in recs if r["split"] == "train")
    assert first > 40  # 64 pixels of binary cross-entropy near ln 2 each at the start
    assert summary["val"]["loss"] < 0.75 * first
    assert summary["val"]["recon"] < summary["val"]["loss"]  # the kl term is positive


# ----- checkpoints, resume, determinism ---------------------------------------------------------
SMALL = ["hidden=16", "train.batch_size=32", "train.checkpoint.every=10", "train.eval.every=10",
         "train.gan.samples=100"]


def test_checkpoint_holds_every_network_and_optimizer_and_weights_per_network(tmp_path):
    run("wgan_2d.yaml", tmp_path, *SMALL, steps=10)
    ckpt = ck.latest(tmp_path / "checkpoints")
    prefixes = {k.split("/")[0] + "/" + k.split("/")[1].split(".")[0] for k in ckpt.tensors if "/" in k}
    assert {"model/generator", "model/critic", "optim/generator", "optim/critic"} <= prefixes
    assert ckpt.state["run"]["step"] == 10 and set(ckpt.state["optimizers"]) == {"generator", "critic"}
    gen = load_file(tmp_path / "generator.safetensors")
    assert sorted(gen) == ["h1.fc.bias", "h1.fc.weight", "h2.fc.bias", "h2.fc.weight", "out.bias", "out.weight"]
    both = load_file(tmp_path / "model.safetensors")
    assert torch.equal(both["generator.out.weight"], gen["out.weight"]) and "critic.out.bias" in both


def test_resumed_gan_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    run("gan_2d.yaml", tmp_path / "full", *SMALL, steps=30)
    cfg = load_run_config(SEEDS / "gan_2d.yaml", [*QUIET, *SMALL], steps=30)
    part = train_networks(cfg, tmp_path / "part", False, print, True, until=20)
    assert part["steps"] == 20 and not (tmp_path / "part" / "model.safetensors").exists()
    run("gan_2d.yaml", tmp_path / "part", *SMALL, steps=30, resume=True)
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "part" / "model.safetensors")
    assert sorted(a) == sorted(b)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        run("gan_2d.yaml", tmp_path / name, *SMALL, steps=10, seed=seed)
    a, b, c = (load_file(tmp_path / n / "model.safetensors") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["generator.out.weight"], c["generator.out.weight"])


def test_generator_output_must_fit_the_discriminator_input(tmp_path):
    with pytest.raises(SpecError) as err:
        run("gan_2d.yaml", tmp_path, "dim=3", steps=1)  # both 3-D: fine for the networks, not for the data
    assert "data 'gaussians' is 2-D points, but the discriminator takes [batch, 3]" in str(err.value)
    assert "gan_2d.yaml:" in str(err.value.diagnostics[0].pos)


def test_network_task_refuses_several_processes(tmp_path):
    with pytest.raises(SpecError, match="training several networks runs on one process"):
        run("gan_2d.yaml", tmp_path, *SMALL, steps=1, nproc_per_node=2)


def test_untrained_generator_covers_no_mode():
    from compilers.torch import build_module
    from nngraph import load_spec

    graph = load_spec(SEEDS / "gan_2d.yaml")
    gen = build_module(graph.networks["generator"], seed=0)
    with torch.no_grad():
        fake = gen(torch.randn(2000, 2, generator=torch.Generator().manual_seed(0)))
    cov = mode_coverage(fake, ring_modes(8, 2.0), 0.05)
    assert cov["modes"] <= 1 and math.isfinite(cov["dist"])
