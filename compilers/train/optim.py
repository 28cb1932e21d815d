"""Optimizers (SGD, Adam, AdamW), the learning-rate schedule and the L1 penalty.

Weight decay and L1 apply to parameters with two or more dims (matrices,
conv kernels, embeddings), not to biases and norm gains -- the usual practice
(GPT-2, BERT). Only parameters with ``requires_grad`` are optimized, so with
LoRA only the adapters are.

The schedule is a multiplier of the peak lr: linear warmup from 0 over
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


def make_optimizer(model: nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimizer of ``train.optimizer`` (cfg) over the trainable parameters of ``model``."""
    kind = cfg["type"]
    wd = cfg["weight_decay"] if cfg["weight_decay"] is not None else (0.01 if kind == "adamw" else 0.0)
    groups = param_groups(model, wd)
    if not groups:
        raise ValueError("the model has no trainable parameters")
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


def make_scheduler(opt: torch.optim.Optimizer, sched: dict[str, Any], peak: float,
                   total: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(sched, peak, total))


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Σ|w| over trainable parameters with >= 2 dims."""
    terms = [p.abs().sum() for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    return torch.stack(terms).sum() if terms else torch.zeros(())
