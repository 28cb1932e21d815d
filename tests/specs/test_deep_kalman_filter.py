"""The deep Kalman filter seed spec (specs/seeds/deep_kalman_filter.yaml): parameter layout against torch.nn,
the KL identity its prior-relative posterior relies on (checked with torch.distributions), the sampled
latent chain's wiring, and a short training run that lowers the negative ELBO on a simulated system."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from nngraph.compilers.torch import build_module
from nngraph import load_spec

from _zoo import SPECS, count, load_clean

SPEC = SPECS / "seeds" / "deep_kalman_filter.yaml"


def test_parameters_are_a_bidirectional_gru_a_transition_mlp_posterior_heads_and_an_emission_mlp():
    graph = load_clean("seeds/deep_kalman_filter")
    obs, u, z, hidden, rnn = 16, 4, 8, 64, 64
    with torch.device("meta"):
        model = nn.ModuleList([
            nn.GRU(obs, rnn, bidirectional=True),
            nn.Linear(z + u, hidden), nn.Linear(hidden, hidden),                # transition G, S trunk
            nn.Linear(hidden, z), nn.Linear(hidden, z),                         # prior mean, prior scale
            nn.Linear(2 * rnn, z), nn.Linear(2 * rnn, z),                       # posterior a_t, log σ_t²
            nn.Linear(z, hidden), nn.Linear(hidden, obs)])                      # emission F
    assert graph.total_params == count(model) == 41_200
    chain = graph.nodes["chain"]
    assert chain.op == "recur" and chain.outputs["sample"].shape == ("batch", "seq", z)
    assert chain.outputs["z"].shape == ("batch", z)  # the final latent state
    assert graph.nodes["loss"].out.shape == ()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_of_the_prior_relative_posterior_is_the_kl_of_its_standardized_part(seed):
    """KL(N(μp + σp·a, (σp·σ)²) || N(μp, σp²)) = KL(N(a, σ²) || N(0, 1)), what vae_reparam's kl computes."""
    g = torch.Generator().manual_seed(seed)
    mu_p, a, log_var = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(3))
    sigma_p = torch.rand(5, 7, generator=g, dtype=torch.float64) * 2 + 0.1
    sigma = torch.exp(0.5 * log_var)
    direct = kl_divergence(Normal(mu_p + sigma_p * a, sigma_p * sigma), Normal(mu_p, sigma_p))
    standardized = -0.5 * (1 + log_var - a ** 2 - log_var.exp())  # vae_reparam's formula, per element
    assert (direct - standardized).abs().max() < 1e-12
    assert (direct - kl_divergence(Normal(a, sigma), Normal(0.0, 1.0))).abs().max() < 1e-12


def test_a_short_training_run_lowers_the_negative_elbo_on_a_simulated_system():
    torch.manual_seed(0)
    graph = load_spec(SPEC, ["obs=3", "controls=2", "latent=2", "hidden=16", "rnn=8"])
    model = build_module(graph, seed=0).train()
    g = torch.Generator().manual_seed(1)
    b, t = 16, 12
    u = torch.randn(b, t, 2, generator=g)
    zs, z = [], torch.zeros(b, 2)
    for i in range(t):  # a latent rotation driven by the controls, observed through a fixed linear map
        z = z @ torch.tensor([[0.9, -0.3], [0.3, 0.9]]) + 0.5 * u[:, i] + 0.1 * torch.randn(b, 2, generator=g)
        zs.append(z)
    x = torch.stack(zs, 1) @ torch.tensor([[1.0, 0.5, -1.0], [0.0, 1.0, 2.0]]) + 0.1 * torch.randn(b, t, 3, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        out = model(x, u)
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, (losses[:5], losses[-5:])
    assert out["kl"].item() >= 0
