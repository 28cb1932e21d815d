"""vae_reparam compiled to torch: the reparameterized sample vs its formula with a seeded generator, eval mode,
the KL term vs torch.distributions, gradients, and specs/vae.yaml forward/backward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from nngraph.compilers.torch import compile_spec, load_spec
from nngraph.compilers.torch.ops.generative import VAEReparam, set_generator
from nngraph.errors import SpecError

ROOT = Path(__file__).resolve().parents[3]
INPUTS = "mu: {shape: [batch, 5], dtype: float32}\nlogvar: {shape: [batch, 5], dtype: float32}"
NODE = "{name: r, op: vae_reparam, in: {mu: mu, logvar: logvar}}"


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() <= tol


def _kl_oracle(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    q = Normal(mu, torch.exp(0.5 * logvar))
    return kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).flatten(1).sum(1).mean()


def test_sample_is_mu_plus_sigma_times_eps_from_the_given_generator(run_op):
    model, graph = run_op(NODE, INPUTS, "{z: r.z, kl: r.kl}")
    assert graph.total_params == 0 and list(model.state_dict()) == []
    mu, logvar = _rand(4, 5), _rand(4, 5, seed=1)
    assert set_generator(model, torch.Generator().manual_seed(7)) == 1
    got = model.train()(mu, logvar)
    eps = torch.randn(4, 5, generator=torch.Generator().manual_seed(7))
    _close(got["z"], mu + torch.exp(0.5 * logvar) * eps)
    # the generator advanced: the next call draws fresh noise; re-seeding repeats the draw
    assert not torch.equal(model(mu, logvar)["z"], got["z"])
    set_generator(model, torch.Generator().manual_seed(7))
    assert torch.equal(model(mu, logvar)["z"], got["z"])


def test_without_a_generator_the_global_rng_is_used(run_op):
    model, _ = run_op(NODE, INPUTS, "{z: r.z, kl: r.kl}")
    mu, logvar = _rand(3, 5), _rand(3, 5, seed=1)
    torch.manual_seed(123)
    got = model(mu, logvar)["z"]
    torch.manual_seed(123)
    _close(got, mu + torch.exp(0.5 * logvar) * torch.randn(3, 5))


def test_eval_mode_returns_mu_and_the_same_kl(run_op):
    model, _ = run_op(NODE, INPUTS, "{z: r.z, kl: r.kl}")
    mu, logvar = _rand(3, 5), _rand(3, 5, seed=1)
    train_kl = model.train()(mu, logvar)["kl"]
    out = model.eval()(mu, logvar)
    assert torch.equal(out["z"], mu) and torch.equal(out["kl"], train_kl)
    model.r.sample_in_eval = True
    assert not torch.equal(model(mu, logvar)["z"], mu)


@pytest.mark.parametrize("shape", [(4, 5), (3, 2, 5)])
def test_kl_matches_torch_distributions_and_the_closed_form(run_op, shape):
    inputs = "\n".join(f"{n}: {{shape: [batch, {', '.join(map(str, shape[1:]))}], dtype: float32}}" for n in ("mu", "logvar"))
    model, graph = run_op(NODE, inputs, "{z: r.z, kl: r.kl}")
    mu, logvar = _rand(*shape) * 2, _rand(*shape, seed=1)
    kl = model(mu, logvar)["kl"]
    assert kl.shape == () and graph.outputs["kl"] is not None
    _close(kl, _kl_oracle(mu, logvar))
    # Kingma & Welling 2013, appendix B: −½ Σ (1 + log σ² − μ² − σ²), averaged over the batch
    per_example = -0.5 * (1 + logvar - mu**2 - logvar.exp()).reshape(shape[0], -1).sum(1)
    _close(kl, per_example.mean())
    assert model(torch.zeros(shape), torch.zeros(shape))["kl"].item() == 0.0  # q = p


def test_gradients_flow_through_the_sample(run_op):
    model, _ = run_op(NODE, INPUTS, "{z: r.z, kl: r.kl}")
    mu, logvar = _rand(3, 5).requires_grad_(), _rand(3, 5, seed=1).requires_grad_()
    set_generator(model, torch.Generator().manual_seed(0))
    model(mu, logvar)["z"].sum().backward()
    eps = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    _close(mu.grad, torch.ones(3, 5))  # dz/dμ = 1
    _close(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps)  # dz/dlogvar = ½σε
    mu.grad = logvar.grad = None
    model(mu, logvar)["kl"].backward()
    _close(mu.grad, mu.detach() / 3)  # dKL/dμ = μ / batch
    _close(logvar.grad, 0.5 * (logvar.detach().exp() - 1) / 3)


def test_init_on_vae_reparam_is_an_error(run_op):
    with pytest.raises(SpecError) as info:
        run_op("{name: r, op: vae_reparam, in: {mu: mu, logvar: logvar}, init: zeros}", INPUTS, "[r.z]")
    (diag,) = info.value.diagnostics
    assert (diag.pos.line, diag.pos.col) == (7, 5)  # the node's line (two inputs)
    assert diag.message == "node 'r' (vae_reparam): init: this node has no weight to initialize"


def test_vae_spec_runs_forward_and_backward_with_all_gradients_nonzero():
    graph = load_spec(ROOT / "specs" / "vae.yaml")
    model = compile_spec(ROOT / "specs" / "vae.yaml")
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 652_824
    assert sum(isinstance(m, VAEReparam) for m in model.modules()) == 1
    x = torch.rand(6, 784, generator=torch.Generator().manual_seed(0))
    set_generator(model, torch.Generator().manual_seed(1))
    out = model(x)
    assert out["recon"].shape == (6, 784) and out["kl"].shape == ()
    _close(out["kl"], _kl_oracle(out["mu"], out["logvar"]))
    loss = torch.nn.functional.binary_cross_entropy(out["recon"], x, reduction="sum") / 6 + out["kl"]
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    model.eval()
    a, b = model(x), model(x)
    assert torch.equal(a["recon"], b["recon"])  # z = μ: deterministic reconstructions
