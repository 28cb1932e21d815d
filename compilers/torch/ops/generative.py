"""Torch implementation of the generative primitives (nngraph/ops/generative.py).

``vae_reparam`` -- :class:`VAEReparam` (seed 000, "Variational Autoencoders (VAEs)";
Kingma & Welling 2013, appendix B), forward line ``z_z, z_kl = self.z(mu, logvar)``:

* training (``model.train()``): z = μ + exp(½·logvar) ⊙ ε with ε ~ N(0, I) of μ's shape,
  dtype and device -- the reparameterization trick, so gradients reach μ and logvar;
* evaluation (``model.eval()``): z = μ, the posterior mean (deterministic reconstructions,
  the usual choice). Set ``module.sample_in_eval = True`` to keep sampling in eval mode;
* in both modes kl = mean over dim 0 (the batch) of −½ Σ_{other dims} (1 + logvar − μ² − exp(logvar)),
  a 0-d tensor: KL(N(μ, diag σ²) || N(0, I)) per example, averaged.

Randomness: ε is drawn from the module's ``generator`` attribute, a ``torch.Generator`` on
μ's device, or from torch's global RNG when it is ``None`` (the default: then
``torch.manual_seed(s)`` before the call makes z reproducible). :func:`set_generator`
sets it on every ``vae_reparam`` node of a model, e.g. a fresh seeded generator per call::

    set_generator(model, torch.Generator().manual_seed(0)); out = model(x)

The node has no learnable state (nothing in the state dict). torch.export / torch.compile
trace the global-RNG form (``generator=None``); a ``torch.Generator`` object cannot be
traced into an exported program.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Emit, NodeCtx, torch_op


class VAEReparam(nn.Module):
    """``(mu, logvar) -> (z, kl)``: the reparameterized sample (μ in eval mode) and the batch-mean KL to N(0, I)."""

    def __init__(self) -> None:
        super().__init__()
        self.generator: torch.Generator | None = None
        self.sample_in_eval = False

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).flatten(1).sum(1).mean()
        if not (self.training or self.sample_in_eval):
            return mu, kl
        eps = torch.randn(mu.shape, generator=self.generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps, kl

    def extra_repr(self) -> str:
        return "generator=global RNG" if self.generator is None else "generator=own"


def set_generator(model: nn.Module, generator: torch.Generator | None) -> int:
    """Draw ε of every ``vae_reparam`` node in ``model`` from ``generator`` (None: the global RNG); returns how many."""
    found = [m for m in model.modules() if isinstance(m, VAEReparam)]
    for m in found:
        m.generator = generator
    return len(found)


@torch_op("vae_reparam", module=lambda ctx: VAEReparam())
def vae_reparam(ctx: NodeCtx, e: Emit) -> str:
    """``self.z(mu, logvar)`` -> (z, kl)."""
    return f"{e.self}({e.inputs['mu']}, {e.inputs['logvar']})"
