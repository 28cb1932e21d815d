"""Kernel: PyTorch ``scaled_dot_product_attention``, with its backends pinned from the profile.

Pattern: an ``attention`` or fused ``sdpa`` node on a torch target. Variants, by what the node needs:

* ``causal``: the mask is exactly causal (self-attention) and there is no bias -> ``is_causal=True``
  (no N×N mask is built; the lowered module falls back to a boolean mask only when the queries
  are not aligned with the keys, e.g. decoding with a KV cache);
* ``none``: no mask, no bias;
* ``mask``: any other mask predicate -> a materialized boolean mask (only where nothing better
  applies: flex may win for block-sparse masks, see lower_flex);
* ``bias``: ALiBi / T5 / Shaw keys (or a fused bias input) -> an additive float mask (masked
  pairs at the dtype's most negative finite value, as the reference).

Check: the profile has ``sdpa``; the node has no Shaw *value* term (it needs the attention weights
SDPA never materializes); at least one non-math backend of the profile fits (dtype, capability,
head_dim, mask/bias support, backward in training, dropout, gradient of a learnable bias) —
otherwise SDPA would run its math backend, which is no faster than the reference. Rewrite:
``{"kernel": "sdpa", "variant", "backends": [fitting backends in profile order, math last],
"gqa", "fix_empty_rows"}``. Cost: the profile's ``sdpa.cost[variant]``.
"""

from __future__ import annotations

from .conditions import cost_ms, dense_bytes, profile_entry, unmet, variant_of
from . import KernelDef, register_kernel



def _fitting(ctx):
    facts, target, mode = ctx.facts, ctx.target, ctx.mode
    entry = target.kernel("sdpa") or {}
    variant = variant_of(facts)
    fit, why = [], []
    for name, be in entry.get("backends", {}).items():
        problems = unmet(be, facts, target, mode, variant, name)
        (why if problems else fit).append(problems or name)
    return entry, variant, fit, [p for ps in why for p in ps]


def _check(ctx):
    facts, target = ctx.facts, ctx.target
    entry, missing = profile_entry(target, "sdpa")
    if missing:
        return missing
    if not target.has(entry.get("feature")):
        return f"torch {target.torch_version} has no scaled_dot_product_attention"
    if facts.value_term:
        return f"{facts.value_term}, which needs the attention weights SDPA never materializes"
    _, variant, fit, why = _fitting(ctx)
    if not [b for b in fit if b != "math"]:
        return "only the math backend fits (" + "; ".join(why) + "): no faster than the reference"
    return None


def _config(ctx):
    entry, variant, fit, _ = _fitting(ctx)
    facts, target = ctx.facts, ctx.target
    backends = [entry["backends"][b]["backend"] for b in fit]
    gqa = (facts.kv_heads or 1) < (facts.heads or 1)
    return {"kernel": "sdpa", "variant": variant, "backends": backends, "backend_names": fit,
            "gqa": gqa and target.has("sdpa_gqa") and all(entry["backends"][b].get("gqa") for b in fit),
            "fix_empty_rows": facts.fix_empty_rows,
            "backward": any(entry["backends"][b].get("backward", True) for b in fit)}


def _cost(facts, target, mode, kv_len, cfg):
    costs = (target.kernel("sdpa") or {}).get("cost", {})
    return cost_ms(costs.get(cfg["variant"]), facts.units(kv_len))


def _memory(facts, kv_len, cfg, mode):
    """is_causal / no mask: nothing T×S; a mask: bool + its int64 index arithmetic; a bias: fp32 per head (twice)."""
    variant = cfg["variant"]
    if variant in ("causal", "none"):
        return 0.0
    shared = 10.0 if facts.mask_kind != "none" else 0.0
    return dense_bytes(facts, kv_len, per_head=8.0 if variant == "bias" else 0.0, shared=shared)


KERNEL = register_kernel(KernelDef(
    "sdpa", __doc__.splitlines()[0], order=1, check=_check, config=_config, cost=_cost,
    memory=_memory, ops=("attention", "attention_lowered", "sdpa"),
    run="nngraph.compilers.torch.ops.attention_kernels:sdpa_core"))
