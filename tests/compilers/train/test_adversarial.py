"""Tasks over several networks (compilers/train/tasks/gan.py, loop.py): the GAN and the WGAN-GP on the
8-Gaussian ring learn to cover its modes, the WGAN losses are the paper's, a DCGAN on the digits trains,
the VAE encoder/decoder pair lowers its ELBO, checkpoints hold every network and optimizer, a resumed run
ends exactly like an uninterrupted one, and the same seed gives the same weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nngraph.compilers.state import checkpoint as ck
from nngraph.compilers.train.tasks.gan import mode_coverage, ring_modes, sample_ring
from nngraph.compilers.train.config import load_run_config
from nngraph.compilers.train.session import train_run
from nngraph.errors import SpecError
from train_helpers import QUIET, SEEDS, run_quiet



def run(spec: str, out: Path, *sets: str, steps: int, **kw):
    return run_quiet(SEEDS / spec, out, *sets, steps=steps, **kw)




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


def test_wgan_gp_on_the_8_gaussian_ring_covers_most_modes(tmp_path):
    summary = run("wgan_2d.yaml", tmp_path, "train.eval.every=1000", steps=1000)
    val = summary["val"]
    # measured (seed 0): 8 modes, hq 0.59, min_share 0.10, dist 0.23; an untrained generator: 0 modes
    assert val["modes"] >= 6, val
    assert val["hq"] >= 0.4, val  # samples within 3 std of a mode
    assert val["min_share"] >= 0.05, val  # every mode gets samples (uniform: 0.125): no collapse
    assert val["dist"] < 0.3, val
    assert val["d_loss"] < 0  # the critic still tells real from fake: E D(fake) - E D(real) < 0


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
    part = train_run(cfg, tmp_path / "part", False, print, True, until=20)
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
    from nngraph.compilers.torch import build_module
    from nngraph import load_spec

    graph = load_spec(SEEDS / "gan_2d.yaml")
    gen = build_module(graph.networks["generator"], seed=0)
    with torch.no_grad():
        fake = gen(torch.randn(2000, 2, generator=torch.Generator().manual_seed(0)))
    cov = mode_coverage(fake, ring_modes(8, 2.0), 0.05)
    assert cov["modes"] <= 1 and math.isfinite(cov["dist"])


# ----- wgan: the losses of the paper ------------------------------------------------------------
def wgan_trainer(tmp_path, *sets: str):
    from nngraph.compilers.train.distributed import Dist
    from nngraph.compilers.train.loop import Trainer

    cfg = load_run_config(SEEDS / "wgan_2d.yaml", [*QUIET, *SMALL, *sets], steps=10)
    return Trainer(cfg, None, tmp_path, Dist(), print)


def wgan_task(tmp_path, *sets: str):
    return wgan_trainer(tmp_path, *sets).task


def test_wgan_gp_critic_loss_is_the_paper_formula_on_a_linear_critic(tmp_path):
    """D(x) = w.x + b has gradient w everywhere: the loss is mean D(fake) - mean D(real) + lambda (|w| - 1)^2."""
    task = wgan_task(tmp_path, "train.gan.gp=10")
    w, b = torch.tensor([[3.0, -4.0]]), torch.tensor([0.5])  # |w| = 5
    task.score = lambda x: x @ w.T + b
    real, fake = torch.randn(64, 2), torch.randn(64, 2) + 1.0
    expected = float((fake @ w.T).mean() - (real @ w.T).mean()) + 10 * (5 - 1) ** 2
    assert float(task.d_loss(real, fake, 0)) == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():  # evaluation: the Wasserstein estimate only
        assert float(task.d_loss(real, fake, 0)) == pytest.approx(expected - 160, rel=1e-5)


def test_wgan_penalty_is_differentiable_in_the_critic_weights(tmp_path):
    """The penalty's gradient is built with create_graph: it reaches the critic's weights (second order)."""
    task = wgan_task(tmp_path, "train.gan.gp=10")
    real, fake = torch.randn(32, 2), torch.randn(32, 2)
    lam_only = task.d_loss(real, fake, 0) - (task.score(fake).mean() - task.score(real).mean())
    grads = torch.autograd.grad(lam_only, list(task.D.parameters()), allow_unused=True)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_wgan_step_trains_the_critic_d_steps_times_and_the_generator_once(tmp_path):
    task = wgan_task(tmp_path, "train.gan.d_steps=3")
    opt_g, opt_d = task.optimizers["generator"], task.optimizers["critic"]
    ids = lambda opt: {id(p) for g in opt.param_groups for p in g["params"]}  # noqa: E731
    assert ids(opt_g) == {id(p) for p in task.G.parameters()}  # each optimizer steps its own network only
    assert ids(opt_d) == {id(p) for p in task.D.parameters()}
    calls = {"generator": 0, "critic": 0}
    for name, opt in task.optimizers.items():
        def counting(*a, _step=opt.step, _name=name, **k):
            calls[_name] += 1
            return _step(*a, **k)
        opt.step = counting
    d0 = {k: v.clone() for k, v in task.D.state_dict().items()}
    task.train_step(0)
    assert calls == {"generator": 1, "critic": 3}
    assert any(not torch.equal(d0[k], v) for k, v in task.D.state_dict().items())
    assert all(p.requires_grad for p in task.D.parameters())  # unfrozen again after the generator step


def test_wgan_weight_clipping_keeps_every_critic_weight_in_range(tmp_path):
    task = wgan_task(tmp_path, "train.gan.gp=0", "train.gan.clip=0.01", "train.optimizer.lr=0.005")
    task.train_step(0)
    assert max(float(p.detach().abs().max()) for p in task.D.parameters()) <= 0.01 + 1e-9
    assert max(float(p.detach().abs().max()) for p in task.G.parameters()) > 0.01  # the generator is not clipped


# ----- dcgan on the digits: a smoke run -----------------------------------------------------------
def test_dcgan_on_digits_losses_stay_balanced_and_samples_move_toward_the_data(tmp_path):
    from nngraph.compilers.torch import build_module, load_state_dict
    from nngraph import load_spec
    from train_helpers import read_jsonl

    summary = run("dcgan.yaml", tmp_path, "train.eval.every=30", "train.log.every=10", steps=150)
    recs = read_jsonl(tmp_path / "metrics.jsonl")
    d_losses = [r["d_loss"] for r in recs if r["split"] == "train"]
    g_losses = [r["loss"] for r in recs if r["split"] == "train"]
    assert len(d_losses) == 15 and all(math.isfinite(v) for v in d_losses + g_losses)
    # neither network wins outright: D's loss stays away from 0 (a perfect D); 2 ln 2 is a coin flip
    assert all(0.2 < v < 3.0 for v in d_losses), d_losses
    assert all(0.2 < v < 6.0 for v in g_losses), g_losses
    # the samples' pixel statistics approach the data's (measured: mean gap 0.35 -> 0.05, std gap 0.50 -> 0.17)
    val = [r for r in recs if r["split"] == "val"]
    assert val[-1]["mean_gap"] < 0.1 and val[-1]["mean_gap"] < 0.5 * val[0]["mean_gap"], val
    assert val[-1]["std_gap"] < 0.6 * val[0]["std_gap"], val
    graph = load_spec(SEEDS / "dcgan.yaml")
    gen0 = build_module(graph.networks["generator"], seed=0).eval()
    gen1 = build_module(graph.networks["generator"], seed=0).eval()
    load_state_dict(gen1, load_file(tmp_path / "generator.safetensors"))
    z = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = gen0(z), gen1(z)
    assert after.shape == (16, 1, 8, 8) and float(after.abs().max()) <= 1.0  # tanh images
    assert float((after - before).abs().mean()) > 0.05  # the generator learned something
    assert summary["networks"] == {"generator": "generator", "discriminator": "discriminator"}


def test_train_schedule_sets_every_optimizers_lr_by_the_step(tmp_path):
    tr = wgan_trainer(tmp_path, "train.schedule.type=linear", "train.gan.d_lr=0.002")
    task = tr.task
    peaks = {"generator": 1e-3, "critic": 2e-3}
    for step, mult in ((0, 1.0), (5, 0.5), (9, 0.1)):  # linear decay to 0 over the 10 steps
        tr.schedule.apply(step)
        for name, opt in task.optimizers.items():
            assert all(g["lr"] == pytest.approx(peaks[name] * mult) for g in opt.param_groups), (name, step)
    plain = wgan_trainer(tmp_path / "plain")  # the default constant schedule keeps the configured lr
    plain.schedule.apply(7)
    assert plain.task.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(1e-3)
