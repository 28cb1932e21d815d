"""FlexAttention kernel of lowered attention: mask_mod from the mask predicate, score_mod from the position.

* ``mask_mod(b, h, q_idx, kv_idx)``: the node's mask tree evaluated with the SAME registered
  predicates the reference uses (nngraph/attention/masks.py works on ints and index tensors);
  graph inputs are captured (``lengths[b]``, ``key_padding[b, kv]``, ``doc_ids[b, q]``); the
  BigBird ``random`` rows are a captured [T, S] table. Query indices are absolute (offset by the
  KV cache length), as in the reference.
* ``score_mod(score, b, h, q_idx, kv_idx)`` (the score arrives already scaled): ALiBi
  ``- m_h·|i - j|``; T5 ``+ rel_bias.weight[bucket(j - i), h]`` with the buckets precomputed per
  relative distance; Shaw keys ``+ (q_i·rel_k[clip(j - i) + k])·scale`` with q·rel_kᵀ precomputed
  [B, H, T, 2k+1] (Shaw *values* are not expressible: the rule rejects them).
* ``BlockMask``: ``create_block_mask`` over the mask_mod with the plan's block size; cached per
  (mask, lengths, offset, device) when the mask reads no graph input, rebuilt per call (with
  the batch) when it does.

The kernel is ``torch.compile(flex_attention)`` (one process-wide compiled function; each new
shape/mask compiles once, seconds on a CPU). :func:`set_compile` (or the environment variable
``NNGRAPH_FLEX_EAGER=1``) runs the uncompiled implementation instead — same results, dense
memory; tests use it to cover every mask × position without a compile each. FlexAttention has
no backward on the CPU; the plan's tiers never pick it when gradients are needed there.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Callable

import torch

from nngraph.attention import masks as masks
from nngraph.attention.analysis import hides_nothing

from .attention_masks import Table, table_mask

_STATE: dict[str, Any] = {"compile": os.environ.get("NNGRAPH_FLEX_EAGER", "") not in ("1", "true", "yes"),
                          "fn": None}
_BLOCKS: "OrderedDict[tuple, Any]" = OrderedDict()
_BLOCK_CACHE_SIZE = 32


def set_compile(enabled: bool) -> bool:
    """Use the compiled (True) or eager (False) flex_attention; returns the previous setting."""
    old = _STATE["compile"]
    _STATE["compile"] = bool(enabled)
    return old


def flex_function(compiled: bool = True) -> Callable[..., Any]:
    """``flex_attention``, compiled once per process unless compilation is off (then :func:`_eager`)."""
    if not (compiled and _STATE["compile"]):
        return _eager
    if _STATE["fn"] is None:
        import torch._dynamo
        from torch.nn.attention.flex_attention import flex_attention

        # every (shape, mask) pair is its own graph; the default limit (8) would fall back to eager
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        _STATE["fn"] = torch.compile(flex_attention, dynamic=False)
    return _STATE["fn"]


def _eager(*args: Any, **kwargs: Any) -> Any:
    """flex_attention's plain-PyTorch implementation, without the per-call tracing torch runs otherwise
    (its debug switch: ~0.15 s instead of ~1 s a call at T=130; forward only, which is all the CPU has)."""
    import torch.nn.attention.flex_attention as fa

    old = getattr(fa, "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG", False)
    fa._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG = True
    try:
        return fa.flex_attention(*args, **kwargs)
    finally:
        fa._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG = old


def mask_mod_for(node: masks.MaskNode, offset: int, q_len: int, kv_len: int,
                 inputs: dict[str, torch.Tensor | None], device: torch.device) -> Callable[..., Any] | None:
    """The mask_mod of a parsed mask (None for ``mask: none``)."""
    if hides_nothing(node):
        return None
    kp, docs = inputs.get("key_padding"), inputs.get("doc_ids")
    context = {"lengths": inputs.get("lengths"), "key_padding": Table(kp) if kp is not None else None,
               "doc_ids": Table(docs) if docs is not None else None, "q_len": offset + q_len, "kv_len": kv_len}

    def build(n: masks.MaskNode) -> Callable[..., Any]:
        if n.op == "leaf":
            mdef = masks.MASKS[n.name or "none"]
            if mdef.table is not None:
                table = table_mask(n, q_len, kv_len, offset, device)[0, 0]
                return lambda b, h, q, kv: table[q - offset, kv]
            params, uses = dict(n.params), {k: context.get(k) for k in mdef.uses}
            return lambda b, h, q, kv: mdef.predicate(b, h, q, kv, **params, **uses)
        kids = [build(c) for c in n.children]
        if n.op == "not":
            return lambda b, h, q, kv: masks.logical_not(kids[0](b, h, q, kv))
        if n.op == "all":
            def both(b, h, q, kv):
                out = kids[0](b, h, q, kv)
                for k in kids[1:]:
                    out = out & k(b, h, q, kv)
                return out
            return both

        def either(b, h, q, kv):
            out = kids[0](b, h, q, kv)
            for k in kids[1:]:
                out = out | k(b, h, q, kv)
            return out
        return either

    fn = build(node)
    if offset:
        return lambda b, h, q_idx, kv_idx: fn(b, h, q_idx + offset, kv_idx)
    return fn


def score_mod_for(m: Any, q: torch.Tensor, offset: int, q_len: int, kv_len: int) -> Callable[..., Any] | None:
    """The score_mod of the module's position encoding (None without a score term): its torch hook."""
    return m.hooks.score_mod(m, q, offset, q_len, kv_len)


def block_mask_for(m: Any, mask_mod: Callable[..., Any] | None, batch: int, q_len: int, kv_len: int, offset: int,
                   block: int, data: bool, device: torch.device) -> Any:
    """The BlockMask (cached when the mask reads no graph input)."""
    if mask_mod is None:
        return None
    from torch.nn.attention.flex_attention import create_block_mask

    key = (repr(m.mask), q_len, kv_len, offset, block, str(device))
    if not data and key in _BLOCKS:
        _BLOCKS.move_to_end(key)
        return _BLOCKS[key]
    bm = create_block_mask(mask_mod, batch if data else None, None, q_len, kv_len, device=device, BLOCK_SIZE=block)
    if not data:
        _BLOCKS[key] = bm
        while len(_BLOCKS) > _BLOCK_CACHE_SIZE:
            _BLOCKS.popitem(last=False)
    return bm


def flex_core(m: Any, tier: dict[str, Any], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int,
              batch: int, inputs: dict[str, torch.Tensor | None], needs_grad: bool = False) -> torch.Tensor:
    """Attention of q [B, H, T, d] over k, v [B, G, S, d] with FlexAttention; returns [B, H, T, d]."""
    from torch.nn.attention.flex_attention import AuxRequest

    q_len, kv_len = q.shape[-2], k.shape[-2]
    data = bool(masks.used_inputs(m.mask))
    mask_mod = mask_mod_for(m.mask, offset, q_len, kv_len, inputs, q.device)
    block_mask = block_mask_for(m, mask_mod, batch, q_len, kv_len, offset, int(tier.get("block", 128)), data, q.device)
    score_mod = score_mod_for(m, q, offset, q_len, kv_len)
    gqa = bool(tier.get("gqa")) and m.kv_heads < m.heads
    if not gqa:
        k, v = m.repeat_kv(k), m.repeat_kv(v)
    fn = flex_function(bool(tier.get("compiled", True)))
    fix = bool(tier.get("fix_empty_rows")) and mask_mod is not None
    kwargs = {"score_mod": score_mod, "block_mask": block_mask, "scale": m.scale, "enable_gqa": gqa}
    if fix:
        o, aux = fn(q, k, v, return_aux=AuxRequest(lse=True), **kwargs)
        vv = m.repeat_kv(v) if gqa else v
        return torch.where(torch.isneginf(aux.lse).unsqueeze(-1), vv.mean(-2, keepdim=True).to(o.dtype), o)
    return fn(q, k, v, **kwargs)
