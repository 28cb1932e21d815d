"""generative family: vae_reparam outputs z like mu and a scalar KL; the KL formula is checked numerically.

Oracle for the formula the op documents: torch.distributions' analytic KL between
N(mu, exp(logvar)) and N(0, I), summed over latent dims and averaged over the batch.
"""

from __future__ import annotations

import torch

from _onenode import node_line, spec_text, value_col
from nngraph.registry import get_op

INPUTS = {"mu_in": (["batch", 20], "float32"), "lv_in": (["batch", 20], "float32")}
NODE = "{name: n, op: vae_reparam, in: {mu: mu_in, logvar: lv_in}}"


def test_vae_reparam_outputs_z_like_mu_and_a_scalar_kl(diagnose):
    graph, errors = diagnose(spec_text(INPUTS, [NODE], "{z: n.z, kl: n.kl}"))
    assert not errors, errors
    n = graph.nodes["n"]
    assert n.outputs["z"].shape == ("batch", 20) and n.outputs["z"].dtype == "float32"
    assert n.outputs["kl"].shape == ()
    assert n.n_params == 0
    assert graph.outputs["kl"].output == "kl"


def test_plain_reference_means_the_sample_z(diagnose):
    graph, errors = diagnose(spec_text(INPUTS, [NODE, "{name: dec, op: linear, in: n, out: 4}"], "{y: dec, kl: n.kl}"))
    assert not errors, errors
    assert graph.nodes["dec"].outputs["out"].shape == ("batch", 4)


def test_documented_kl_formula_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(8, 5), torch.randn(8, 5)
    documented = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1)).mean()
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(5), torch.ones(5))
    reference = torch.distributions.kl_divergence(q, p).sum(dim=1).mean()
    assert torch.allclose(documented, reference, atol=1e-5)
    doc = get_op("vae_reparam").doc
    assert "−½ Σ_latent (1 + logvar − μ² − exp(logvar))" in doc and "seed 000" in doc


def test_mu_and_logvar_of_different_shapes_is_an_error_at_the_node(diagnose):
    inputs = {"mu_in": (["batch", 20], "float32"), "lv_in": (["batch", 16], "float32")}
    text = spec_text(inputs, [NODE], "{z: n.z}")
    _, errors = diagnose(text)
    assert len(errors) == 1
    line, col, message, _ = errors[0]
    assert message == "node 'n' (vae_reparam): mu and logvar must have the same shape, got [batch, 20] and [batch, 16]"
    assert (line, col) == (node_line(0, 2), value_col(text, node_line(0, 2), None))


def test_integer_logvar_is_an_error(diagnose):
    inputs = {"mu_in": (["batch", 20], "float32"), "lv_in": (["batch", 20], "int64")}
    _, errors = diagnose(spec_text(inputs, [NODE], "{z: n.z}"))
    assert len(errors) == 1 and "logvar must be a floating-point tensor, got int64" in errors[0][2]


def test_mu_without_a_batch_dim_is_an_error(diagnose):
    inputs = {"mu_in": ([20], "float32"), "lv_in": ([20], "float32")}
    _, errors = diagnose(spec_text(inputs, [NODE], "{z: n.z}"))
    assert len(errors) == 1 and "mu must have at least 2 dims, got [20]" in errors[0][2]
