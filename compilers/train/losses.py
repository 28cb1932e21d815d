"""Loss functions and the diffusion noise schedule used by the tasks (:mod:`.tasks`).

All losses are means over the examples (or target tokens / nodes) of the
local batch, so averaging gradients over data-parallel processes of equal
batch size equals one process on the concatenated batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in at least float32: bf16/fp16 logits are widened for the loss; a float64 model keeps its float64
    (a float64 run -- bench/tensor_parallel.py --dtype float64 -- compares exact maths, not float32 rounding)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                  label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean CE over the (masked) positions; logits [..., C], target [...]. Returns (loss, correct, count).

    ``correct`` (argmax hits) is counted only outside autograd -- in evaluation; a training step does not
    pay for an argmax over the logits it never reports (it gets 0).
    """
    c = logits.shape[-1]
    flat, tgt = wide(logits.reshape(-1, c)), target.reshape(-1)
    if mask is not None:
        keep = mask.reshape(-1)
        flat, tgt = flat[keep], tgt[keep]
    if tgt.numel() == 0:  # nothing to predict in this batch (e.g. no masked position): a zero that keeps the graph
        return flat.sum() * 0.0, torch.tensor(0), torch.tensor(0)
    loss = F.cross_entropy(flat, tgt, label_smoothing=label_smoothing)
    if torch.is_grad_enabled():
        return loss, torch.tensor(0), torch.tensor(tgt.numel())
    correct = (flat.argmax(-1) == tgt).sum()
    return loss, correct, torch.tensor(tgt.numel())


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error; a trailing size-1 dim of the prediction is squeezed to match the target."""
    if pred.ndim == target.ndim + 1 and pred.shape[-1] == 1:
        pred = pred.squeeze(-1)
    return F.mse_loss(pred.float(), target.float().reshape(pred.shape))


def elbo(recon: torch.Tensor, x: torch.Tensor, kl: torch.Tensor, kind: str, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative ELBO per example: reconstruction summed over features (BCE or squared error) + beta * kl.

    ``kl`` is the graph's kl output, already the batch mean of KL(q(z|x) || N(0, I)).
    Returns (loss, reconstruction term).
    """
    x = x.reshape(recon.shape).float()
    recon = recon.float()
    if kind == "bce":
        rec = F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), x, reduction="sum") / x.shape[0]
    else:
        rec = F.mse_loss(recon, x, reduction="sum") / x.shape[0]
    return rec + beta * kl.float().mean(), rec


def alphas_cumprod(steps: int, schedule: str, beta_start: float, beta_end: float, cosine_s: float) -> torch.Tensor:
    """ᾱ_t for t = 0..T-1: linear β (Ho et al.) or cosine (Nichol & Dhariwal, β clipped at 0.999)."""
    if schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    else:
        def f(t: float) -> float:
            return math.cos((t / steps + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
        betas = torch.tensor([min(1 - f(t + 1) / f(t), 0.999) for t in range(steps)], dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0).float()


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (the closed-form forward process)."""
    a = abar.to(x0.device)[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
