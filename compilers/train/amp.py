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

Under FSDP, ``precision: bf16`` also sets FSDP2's ``MixedPrecisionPolicy(param_dtype=bf16,
reduce_dtype=fp32)`` (:func:`fsdp_policy`): the all-gathered parameters (what a block computes with, and what
is sent) are bf16 -- half the gathered memory and traffic of fp32 -- while the shards, the optimizer
and the reduce-scatter of the gradients stay fp32, so averaging N ranks' gradients rounds no more than one
process does. DDP keeps fp32 weights and autocasts. A dtype the device cannot compute in is a located error
at ``train.precision`` (:func:`unsupported`).
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


def unsupported(precision: str, device: torch.device) -> str | None:
    """Why ``device`` cannot train in ``precision`` (None when it can): bf16 on a GPU without bf16 arithmetic
    (compute capability below 8.0, before Ampere)."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        major, minor = torch.cuda.get_device_capability(device)
        return (f"train.precision: bf16 is not supported on {torch.cuda.get_device_name(device)} (compute capability "
                f"{major}.{minor}; bf16 needs 8.0 or later)")
    return None


def fsdp_policy(precision: str) -> Any:
    """FSDP2's mixed-precision policy for ``precision``: bf16 gathers bf16 parameters and reduce-scatters fp32
    gradients; fp32 and fp16 (autocast and a scaler on fp32 weights) gather the fp32 shards as they are."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


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
