"""Optimizers (SGD, Adam, AdamW), the learning-rate schedule and the L1 penalty.

Weight decay and L1 apply to parameters with two or more dims (matrices,
conv kernels, embeddings), not to biases and norm gains -- the usual practice
(GPT-2, BERT). Only parameters with ``requires_grad`` are optimized, so with
LoRA only the adapters are.

The schedule (:class:`Schedule`, one for every task and every optimizer) is a
multiplier of each parameter group's peak lr: linear warmup from 0 over
``warmup`` steps, then constant, cosine or linear decay to ``min_lr`` at the
last step. It is a pure function of the step, so resuming needs only the step.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    seen: set[int] = set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def mixed(params: list[torch.Tensor]) -> bool:
    """Whether some of ``params`` are DTensors and others plain tensors (tensor parallelism without FSDP splits
    some layers and leaves others whole): the foreach kernels, which take one list per step, refuse the mix, so
    such a group steps parameter by parameter (the same update)."""
    from torch.distributed.tensor import DTensor

    return len({isinstance(p, DTensor) for p in params}) > 1


def make_optimizer(model: nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimizer of ``train.optimizer`` (cfg) over the trainable parameters of ``model``."""
    kind = cfg["type"]
    wd = cfg["weight_decay"] if cfg["weight_decay"] is not None else (0.01 if kind == "adamw" else 0.0)
    groups = param_groups(model, wd)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    for g in groups:
        if mixed(g["params"]):
            g["foreach"] = False
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"])
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], foreach=True)


def lr_lambda(sched: dict[str, Any], peak: float, total: int) -> Callable[[int], float]:
    """Multiplier of the peak lr at step s (0-based: the lr used by the (s+1)-th update)."""
    warmup, kind = sched["warmup"], sched["type"]
    floor = sched["min_lr"] / peak if peak > 0 else 0.0

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        span = max(total - warmup, 1)
        frac = min(max(step - warmup, 0) / span, 1.0)
        if kind == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))
        return floor + (1 - floor) * (1 - frac)

    return f


class Schedule:
    """``train.schedule`` over ``optimizers``: before the update of step s (0-based) every parameter group's lr is
    lr_s = peak · lr_lambda(s), peak being the lr the group was made with (``train.optimizer.lr``, or a task's own
    such as ``gan.d_lr``)."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], sched: dict[str, Any], total: int):
        self.optimizers = list(optimizers.values())
        self.peaks = [g["lr"] for g in self.groups()]
        self.fns = [lr_lambda(sched, peak, total) for peak in self.peaks]

    def groups(self) -> list[dict[str, Any]]:
        """The optimizers' parameter groups now (``load_state_dict`` replaces the group dicts)."""
        return [g for opt in self.optimizers for g in opt.param_groups]

    def lrs(self, step: int) -> list[float]:
        """Every group's lr at ``step``."""
        return [peak * f(step) for peak, f in zip(self.peaks, self.fns)]

    def apply(self, step: int) -> None:
        """Set every group's lr for the update of ``step``."""
        for group, lr in zip(self.groups(), self.lrs(step)):
            group["lr"] = lr

    def lr(self, step: int) -> float:
        """The first group's lr at ``step`` (what the log shows); 0 without optimizers."""
        return self.lrs(step)[0] if self.peaks else 0.0

    def record(self, step: int) -> dict[str, Any]:
        """The checkpoint's ``scheduler`` field of a one-graph run after ``step`` updates: the record torch's
        ``LambdaLR`` wrote there before this class replaced it (kept so that old and new checkpoints read alike)."""
        return {"base_lrs": list(self.peaks), "last_epoch": step, "_step_count": step + 1, "_is_initial": False,
                "_get_lr_called_within_step": False, "_last_lr": self.lrs(step), "lr_lambdas": [None] * len(self.peaks)}


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Σ|w| over trainable parameters with >= 2 dims."""
    terms = [p.abs().sum() for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    return torch.stack(terms).sum() if terms else torch.zeros(())
