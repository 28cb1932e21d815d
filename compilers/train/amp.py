"""Mixed precision: autocast to bf16 / fp16, and for fp16 a gradient scaler -- the same code on the CPU and CUDA.

fp16 keeps 5 exponent bits, so small gradients underflow to zero. With
``precision: fp16`` a ``torch.amp.GradScaler`` multiplies the loss by a scale S
(65536 at the start) before backward and divides the gradients by S before
clipping and the update. When any gradient is inf or NaN the whole update is
skipped (weights and optimizer state untouched) and S is halved; after
``growth_interval`` (2000) clean steps S doubles (``train.scaler``). The scaler's state is part of
the checkpoint, so a resumed run skips and grows exactly where the
uninterrupted one would. Under FSDP the scaler is FSDP's ``ShardedGradScaler``:
every rank holds a shard of the gradients, and all ranks agree on skipping.
bf16 has fp32's exponent range and needs no scaler. Weights (the "master"
copy) and optimizer state stay fp32 in every mode.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterable

import torch


def autocast(precision: str, device: torch.device) -> Any:
    """The autocast context of ``precision`` (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(precision: str, device: torch.device, cfg: dict[str, Any], sharded: bool = False) -> Any:
    """The gradient scaler of ``precision`` (fp16 only; ``cfg``: ``train.scaler``), else None."""
    if precision != "fp16":
        return None
    if sharded:
        from .fsdp import grad_scaler

        return grad_scaler(device, cfg["init_scale"], cfg["growth_interval"])
    return torch.amp.GradScaler(device.type, init_scale=cfg["init_scale"], growth_interval=cfg["growth_interval"])


def backward(loss: torch.Tensor, scaler: Any) -> None:
    (scaler.scale(loss) if scaler is not None else loss).backward()


def clip_grad_norm(params: list[torch.nn.Parameter], clip: float) -> None:
    """torch's ``clip_grad_norm_``: g ← g · min(1, clip / (‖g‖ + 1e-6)), ‖g‖ = √(Σ_p ‖g_p‖²); also when some
    gradients are DTensors and others not, or on different meshes (tensor parallelism leaves the norms whole,
    FSDP over dp shards them on a mesh of their own): each DTensor's norm is then reduced over its mesh."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    meshes = {g.device_mesh if isinstance(g, DTensor) else None for g in grads}
    if len(meshes) <= 1:
        torch.nn.utils.clip_grad_norm_(params, clip)
        return
    norms = [torch.linalg.vector_norm(g) for g in grads]
    total = torch.linalg.vector_norm(torch.stack([n.full_tensor() if isinstance(n, DTensor) else n for n in norms]))
    coef = min(1.0, clip / (float(total) + 1e-6))
    for g in grads:
        g.mul_(coef)


def update(opt: torch.optim.Optimizer, scaler: Any, params: Iterable[torch.nn.Parameter], clip: float) -> bool:
    """Unscale, clip, step the optimizer (unless the scaler finds inf/NaN), zero the gradients.

    Returns whether the weights were updated (the learning rate is a function of the step either way:
    :class:`.optim.Schedule`).
    """
    with warnings.catch_warnings():
        # FSDP's scaler: DTensor notes that it replicates the scaler's one-element inf flags
        warnings.filterwarnings("ignore", message="Found a non-scalar tensor with numel=1")
        if scaler is not None:
            scaler.unscale_(opt)
        if clip:
            clip_grad_norm(list(params), clip)
        applied = True
        if scaler is not None:
            before = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            applied = scaler.get_scale() >= before
        else:
            opt.step()
    opt.zero_grad(set_to_none=True)
    return applied
