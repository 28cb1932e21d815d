"""Kernel: one document at a time — packed sequences under a document mask computed block-diagonally.

Pattern: an ``attention`` node on a torch target whose mask is ``document`` or an ``all`` with a
``document`` conjunct (with causal, a sliding window, key padding, …). The kernel
(compilers/torch/ops/attention_kernels_document.py) reads the runs of equal ``doc_ids`` at run time
(no compile, no BlockMask), batches the runs of equal length and computes each run's queries against
only its own keys — SDPA (is_causal, a boolean mask or an additive position term) or, for Shaw values
and a learnable T5 table in training, the reference's math — so forward and backward touch Σ L² pairs,
not T². Inside a run, query tiles (``tile``..``tile_max`` queries) skip the key blocks a causal mask or a
sliding window cannot reach (about Σ L²/2 pairs causal, Σ L·(tile + window) with a window); exactly-causal
runs from ``is_causal_from`` tokens use SDPA's is_causal, which skips them itself. Ids that are not
contiguous runs and calls with cached keys are computed densely (exact, slow).

Check: the profile has ``document``; self-attention; a top-level ``document`` conjunct; no table mask
(BigBird's random rows have no pointwise form). Every position encoding is served (positions from the
``positions`` input when connected). Cost: ``document.cost`` per unit at the worst case the plan
can know — one document filling the sequence — scaled by the block density of the rest of the mask
(causal: about half; a window: its band), the work the tiles do, plus a per-call overhead for the run
table; memory: the runs' masks and scores at that worst case.
"""

from __future__ import annotations


from .conditions import cost_ms, dense_bytes, pointwise_unmet, profile_entry, variant_of
from .density import block_density
from . import ATTENTION_OPS, KernelDef, register_kernel


def _has_document(mask) -> bool:
    kids = list(mask.children) if mask.op == "all" else [mask]
    return any(c.op == "leaf" and c.name == "document" for c in kids)


def _check(ctx):
    facts, target, mode = ctx.facts, ctx.target, ctx.mode
    entry, missing = profile_entry(target, "document")
    if missing:
        return missing
    if facts.cross:
        return "cross-attention: documents relate positions of one sequence"
    if facts.mask is None or not _has_document(facts.mask):
        return f"mask {facts.mask_text} has no document conjunct (document, or all: [document, ...])"
    return pointwise_unmet(entry, facts, target, mode)


def _config(ctx):
    facts, entry = ctx.facts, ctx.target.kernel("document")
    return {"kernel": "document", "fix_empty_rows": facts.fix_empty_rows, "sdpa": bool(entry.get("sdpa", True)),
            "bias_grad": bool(entry.get("bias_grad", False)), "backward": True,
            **{k: int(entry[k]) for k in ("tile", "tile_max", "is_causal_from") if k in entry}}


def _cost(facts, target, mode, kv_len, cfg):
    entry = target.kernel("document") or {}
    key = "cost_bias" if variant_of(facts) == "bias" else "cost"
    return cost_ms(entry.get(key) or entry.get("cost"), facts.units(kv_len), block_density(facts, kv_len, 128))


def _memory(facts, kv_len, cfg, mode):
    """Worst case (one document): the run's boolean mask, and with a position term its fp32 scores per head."""
    per_head = 12.0 if facts.has_bias else 0.0
    return dense_bytes(facts, kv_len, per_head=per_head, shared=1.0 if facts.mask_kind != "none" else 0.0)


KERNEL = register_kernel(KernelDef(
    "document", __doc__.splitlines()[0], order=4, check=_check, config=_config, cost=_cost,
    memory=_memory, ops=ATTENTION_OPS,
    run="nngraph.compilers.torch.ops.attention_kernels_document:document_core"))
