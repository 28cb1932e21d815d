"""Generative-model primitives: the VAE reparameterization with its KL term.

Formula: seed 000 "Variational Autoencoders (VAEs)": the ELBO
E_{z~q(z|x)}[log p(x|z)] − KL(q(z|x) || p(z)) with prior p(z) = N(0, I), and the
reparameterization trick z = μ + σ ⊙ ε, ε ~ N(0, I), which lets gradients flow through
the sample. With σ = exp(logvar / 2) the KL of a diagonal Gaussian to N(0, I) is
KL = −½ Σ_j (1 + logvar_j − μ_j² − exp(logvar_j)) (Kingma & Welling 2013, appendix B).
"""

from __future__ import annotations

from ..registry import InferCtx, op
from ..types import TensorType, dims_differ, format_shape


@op("vae_reparam", family="generative", inputs=("mu", "logvar"), outputs=("z", "kl"),
    kernels=8, example={"in": {"mu": "enc_mu", "logvar": "enc_logvar"}})
def vae_reparam(ctx: InferCtx) -> dict[str, TensorType]:
    """VAE reparameterization: z = μ + exp(½·logvar) ⊙ ε, ε ~ N(0, I), and kl = KL(q(z|x) || N(0, I)) averaged over the batch (seed 000, "Variational Autoencoders (VAEs)").

    Inputs mu and logvar are [batch, Z] (any trailing latent dims); outputs z [batch, Z] (``node.z``) and the
    scalar kl [] (``node.kl``) = mean over the batch of −½ Σ_latent (1 + logvar − μ² − exp(logvar)).
    At evaluation a back end may return z = μ. No learnable parameters.
    """
    mu, logvar = ctx.inputs["mu"], ctx.inputs["logvar"]
    assert mu is not None and logvar is not None
    ctx.need_min_rank(mu, 2, "mu")
    ctx.need_float(mu, "mu")
    ctx.need_float(logvar, "logvar")
    if mu.rank != logvar.rank or any(dims_differ(a, b) for a, b in zip(mu.shape, logvar.shape)):
        ctx.fail(f"mu and logvar must have the same shape, got {format_shape(mu.shape)} and {format_shape(logvar.shape)}",
                 "produce both from the encoder with the same latent size")
    if mu.dtype != logvar.dtype:
        ctx.fail(f"mu and logvar have different dtypes: {mu.dtype} and {logvar.dtype}", "cast one of them")
    return {"z": mu, "kl": TensorType((), mu.dtype)}
