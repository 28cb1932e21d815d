"""LoRA: low-rank adapters on linear layers (Hu et al., 2021), trained while everything else is frozen.

A matched ``nn.Linear`` at ``name`` is replaced by :class:`LoRALinear`, which
keeps the original ``weight`` and ``bias`` under the same names (so the state
dict still has ``name.weight``) and adds ``name.lora_a`` [r, in] (Kaiming
uniform) and ``name.lora_b`` [out, r] (zeros, so training starts at the
original model)::

    y = x Wᵀ + b + (alpha / r) · dropout(x) Aᵀ Bᵀ

:func:`merge_lora` folds ``(alpha / r) · B A`` into ``W`` and puts plain
``nn.Linear`` layers back: the exported model has the spec's own state-dict
keys and no extra cost.
"""

from __future__ import annotations

import fnmatch
import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.rank, self.scale = rank, alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, self.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(self.drop(x), self.lora_a), self.lora_b) * self.scale

    def merged(self) -> nn.Linear:
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight + self.scale * (self.lora_b @ self.lora_a))
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, scale={self.scale:g}"


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, (nn.ModuleList, nn.Sequential)) and attr.isdigit():
        parent[int(attr)] = module
    else:
        setattr(parent, attr, module)


def linear_names(model: nn.Module) -> list[str]:
    """Dotted names of the model's ``nn.Linear`` layers (the names patterns are matched against)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def apply_lora(model: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float) -> list[str]:
    """Freeze every parameter, wrap the linear layers matching any pattern; returns the wrapped names."""
    for p in model.parameters():
        p.requires_grad_(False)
    names = [n for n in linear_names(model) if any(fnmatch.fnmatchcase(n, pat) for pat in targets)]
    for name in names:
        _set(model, name, LoRALinear(model.get_submodule(name), rank, alpha, dropout))
    return names


def merge_lora(model: nn.Module) -> int:
    """Replace every :class:`LoRALinear` by its merged ``nn.Linear``; returns how many."""
    names = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in names:
        _set(model, name, model.get_submodule(name).merged())
    for p in model.parameters():
        p.requires_grad_(True)
    return len(names)


def merged_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (keys of a model with adapters) with every adapter folded into its weight and removed."""
    out = dict(state)
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear):
            a, b = out.pop(f"{name}.lora_a"), out.pop(f"{name}.lora_b")
            out[f"{name}.weight"] = out[f"{name}.weight"] + m.scale * (b @ a)
    return out
