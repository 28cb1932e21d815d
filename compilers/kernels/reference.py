"""Kernel: the reference (decomposed) attention — always applies; the oracle of every other kernel.

Pattern: an ``attention`` or fused ``sdpa`` node. Check: none (it runs everywhere, forward and
backward, any mask, position, dtype and dropout). Rewrite: ``{"kernel": "reference"}`` — the
lowered module calls the unmodified reference forward (compilers/torch/ops/attention.py).
Cost: the profile's ``reference.cost``; memory: it materializes the [B, H, T, S] scores (three times).
"""

from __future__ import annotations

from .conditions import cost_ms, dense_bytes
from . import KernelDef, register_kernel



def _check(ctx):
    return None


def _config(ctx):
    return {"kernel": "reference", "backward": True}


def _cost(facts, target, mode, kv_len, cfg):
    entry = (target.kernel("reference") or {}).get("cost") or {"ns_per_unit": 1.0}
    return cost_ms(entry, facts.units(kv_len))


def _memory(facts, kv_len, cfg, mode):
    """Scores, their masked copy and the softmax (fp32 per head), plus the mask's index arithmetic."""
    return dense_bytes(facts, kv_len, per_head=12.0, shared=10.0 if facts.mask_kind != "none" else 0.0)


KERNEL = register_kernel(KernelDef(
    "reference", __doc__.splitlines()[0], order=0, check=_check, config=_config, cost=_cost,
    memory=_memory, ops=("attention", "attention_lowered", "sdpa"),
    run=None))
