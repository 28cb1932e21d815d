"""Kernel: banded tiles ("local") — sliding-window style masks computed only inside their band.

Pattern: an ``attention`` node on a torch target. The kernel (compilers/torch/ops/attention_kernels_local.py)
cuts the queries into tiles of ``chunk`` and scores each tile against the ``chunk + left + right``
keys its band reaches (plus the global columns; global rows are computed densely), evaluating the
exact mask predicate on every computed pair. The band comes from the masks themselves
(:mod:`nngraph.attention.bands`): sliding window, dilated window, the local Sparse Transformer
pattern, Longformer's window + global tokens, and any of these intersected with other masks (key
padding, causal).

Check: the profile has ``local``; self-attention; the mask has a band (a causal or unmasked
node has none — SDPA serves those without any T×S tensor); no BigBird random rows (a table over
the whole sequence); no score bias from per-row position ids (a ``positions`` input: the tiles compute
the bias from indices). Every position encoding is tiled, Shaw's relative values included. It is
plain autograd math, so unlike compiled FlexAttention on the CPU it also serves training.
Cost: per unit of the tiles actually computed (heads·head_dim·T·(tile width + cols) + the global rows'
heads·head_dim·rows·S; the tile width is chunk+left+right rounded up to 16): ``local.cost`` for the
in-place tiles that calls without autograd take, ``local.cost_training`` for the batched autograd
tiles of training; memory: the tile scores, linear in T.
"""

from __future__ import annotations

from nngraph.attention.analysis import band_of, has_band
from nngraph.attention.bands import Band, tile_width

from .conditions import cost_ms, pointwise_unmet, profile_entry, row_bias_unserved
from . import ATTENTION_OPS, KernelDef, register_kernel



def _band(facts):
    return band_of(facts.mask) if facts.mask is not None else None


def _check(ctx):
    facts, target, mode = ctx.facts, ctx.target, ctx.mode
    entry, missing = profile_entry(target, "local")
    if missing:
        return missing
    if facts.cross:
        return "cross-attention: a band relates positions of one sequence"
    if facts.mask is None or not has_band(facts.mask):
        return f"mask {facts.mask_text} has no band around the diagonal (only windows, dilated/local-strided windows " \
               "and global tokens combined with them do)"
    if why := row_bias_unserved(facts, "the tiles' term"):
        return why
    return pointwise_unmet(entry, facts, target, mode, ", not a band")


def _config(ctx):
    facts, entry = ctx.facts, ctx.target.kernel("local")
    band = _band(facts)
    return {"kernel": "local", "chunk": int(entry.get("chunk", 128)), "band": [band.left, band.right or 0],
            "globals": len(band.cols), "fix_empty_rows": facts.fix_empty_rows,
            "backward": True}


def _computed(facts, kv_len, cfg):
    """(tile keys per query, global rows) actually computed at this length."""
    left, right = cfg["band"]
    q_len = facts.q_len if isinstance(facts.q_len, int) and facts.cross else kv_len
    keys = tile_width(min(q_len, cfg["chunk"]), Band(left, right)) + cfg["globals"]  # never narrower than the band
    return keys, min(cfg["globals"], kv_len)


def _cost(facts, target, mode, kv_len, cfg):
    keys, rows = _computed(facts, kv_len, cfg)
    units = facts.units(kv_len) * keys / kv_len + facts.units(kv_len, q_len=rows)
    entry = target.kernel("local") or {}
    return cost_ms(entry.get("cost_training" if mode == "training" else "cost"), units)


def _memory(facts, kv_len, cfg, mode):
    """Training (batched tiles): the tile scores, masked and softmaxed (fp32 per head) — T × (tile width + globals),
    not T × S. Inference (one tile at a time): one tile's scores per head and the cached mask as weights and bias
    (fp32, shared by the heads). Both: the global rows' scores against every key."""
    keys, rows = _computed(facts, kv_len, cfg)
    heads = facts.heads or 1
    tiles = 12.0 * heads * kv_len * keys if mode == "training" else 4.0 * heads * cfg["chunk"] * keys + 8.0 * kv_len * keys
    return tiles + 12.0 * heads * rows * kv_len


KERNEL = register_kernel(KernelDef(
    "local", __doc__.splitlines()[0], order=2, check=_check, config=_config, cost=_cost,
    memory=_memory, ops=ATTENTION_OPS,
    run="nngraph.compilers.torch.ops.attention_kernels_local:local_core"))
