"""Torch reference implementation of ``attention`` (nngraph/ops/attention.py): decomposed, readable math.

This is the ORACLE a fused kernel (SDPA, FlexAttention) must reproduce, so every step is explicit
(seed 002, "Self-Attention", "Multi-Head Attention", "Cross-Attention"; seed 000, "Different
Types of Transformers" for the bias B and mask M)::

    q, k, v = x W_qᵀ, c W_kᵀ, c W_vᵀ            c = context (cross) or x (self); fused: one qkv matrix
    split heads: q [B, H, T, d], k, v [B, G, S, d]
    RoPE (qk_transform): q, k rotated at their absolute positions
    KV cache (if attached): k, v appended after the cached ones
    GQA: k, v = repeat_interleave(k, H/G, dim=1)     (query head i reads key/value head ⌊i·G/H⌋)
    scores = q kᵀ · scale + B                       scale = 1/√d unless given (T5: 1.0);
                                                    B = ALiBi / T5 bucket bias / Shaw q·a^K term
    scores = masked_fill(scores, ¬M, finfo.min)     M from the mask predicates (attention_masks)
    p = dropout(softmax(scores))                    softmax in float32 for 16-bit inputs
    o = p @ v (+ Σ_j p_ij a^V_ij for Shaw values)
    out = merge_heads(o) W_oᵀ + b_o

Masked scores are filled with the dtype's most negative finite value (as Hugging Face does), not
-inf: a row whose keys are all masked then attends uniformly instead of producing NaN; any row
with at least one visible key gets exactly the -inf result (exp underflows to 0).

Layout, scale, mask and position come from the node's resolved description
(:mod:`nngraph.attention.resolved`); position terms from the encoding's torch hooks
(:mod:`.attention_positions`). State (names from nngraph/attention/layout.py): ``qkv.weight [(H+2G)·d, D]`` (+ ``qkv.bias``) or
``q.weight [H·d, D]``, ``k.weight [G·d, Dc]``, ``v.weight [G·d, Dc]`` (+ biases); ``out.weight
[D, H·d]`` (+ ``out.bias``); t5_bias ``rel_bias.weight [num_buckets, H]``; shaw ``rel_k [2k+1, d]``
(+ ``rel_v``). Init: weights normal(0, 0.02) (GPT-2/BERT), biases 0.

The forward line is ``self.attn(x, context=..., lengths=..., key_padding=..., doc_ids=..., positions=...)``
with the connected inputs only; ``positions`` [B, T] are per-row position ids (RoPE angles and relative
biases read them instead of offset + arange; see :mod:`.attention_positions`). Incremental decoding: see :mod:`.attention_cache`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from nngraph.attention import masks as masks
from nngraph.attention import positions as positions
from nngraph.attention.resolved import META_KEY, ResolvedAttention, resolve

from ..registry import TP_COLWISE, TP_HEADS, TP_ROWWISE, Emit, NodeCtx, torch_op
from . import attention_positions as pos
from .attention_masks import mask_tensor

_INIT = {"weight": ("normal", {"std": 0.02}), "bias": "zeros", "rel_k": ("normal", {"std": 0.02}),
         "relative_position_bias_table": ("normal", {"std": 0.02}),
         "rel_v": ("normal", {"std": 0.02})}


class Projections(nn.Module):
    """The q/k/v/out projections every attention op shares (fused ``qkv`` or separate ``q``, ``k``, ``v``)."""

    def __init__(self, d_model: int, d_ctx: int, heads: int, kv_heads: int, head_dim: int, qkv: str = "separate",
                 bias: bool = True, out_bias: bool = True):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.fused = heads, kv_heads, head_dim, qkv == "fused"
        q_rows, kv_rows = heads * head_dim, kv_heads * head_dim
        if self.fused:
            self.qkv = nn.Linear(d_model, q_rows + 2 * kv_rows, bias=bias)
        else:
            self.q = nn.Linear(d_model, q_rows, bias=bias)
            self.k = nn.Linear(d_ctx, kv_rows, bias=bias)
            self.v = nn.Linear(d_ctx, kv_rows, bias=bias)
        self.out = nn.Linear(q_rows, d_model, bias=out_bias)

    def split_heads(self, t: torch.Tensor, n: int) -> torch.Tensor:
        """[B, T, n·d] -> [B, n, T, d]."""
        return t.view(t.shape[0], t.shape[1], n, self.head_dim).transpose(1, 2)

    def merge_heads(self, o: torch.Tensor) -> torch.Tensor:
        """[B, H, T, d] -> [B, T, H·d]."""
        return o.transpose(1, 2).reshape(o.shape[0], o.shape[2], self.heads * self.head_dim)

    def project_q(self, x: torch.Tensor) -> torch.Tensor:
        """Queries [B, H, T, d] (separate projections only)."""
        return self.split_heads(self.q(x), self.heads)

    def project_kv(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, G, S, d] of the key/value source (separate projections only)."""
        return self.split_heads(self.k(c), self.kv_heads), self.split_heads(self.v(c), self.kv_heads)

    def project(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """q [B, H, T, d], k, v [B, G, S, d]; fused: one matmul, rows q | k | v."""
        if self.fused:
            kv_rows = self.kv_heads * self.head_dim
            q, k, v = self.qkv(x).split([self.heads * self.head_dim, kv_rows, kv_rows], dim=-1)
            return self.split_heads(q, self.heads), self.split_heads(k, self.kv_heads), self.split_heads(v, self.kv_heads)
        k, v = self.project_kv(x if context is None else context)
        return self.project_q(x), k, v

    def tp_local(self, tp: int) -> None:
        """Tensor parallelism: q/k/v hold this rank's heads/tp query and kv_heads/tp key/value heads (their
        weights split by rows, head by head), so the head split and merge count those."""
        self.heads, self.kv_heads = self.heads // tp, self.kv_heads // tp

    def repeat_kv(self, t: torch.Tensor) -> torch.Tensor:
        """Grouped-query attention: [B, G, S, d] -> [B, H, S, d], each kv head serving H/G query heads."""
        groups = self.heads // self.kv_heads
        return t if groups == 1 else t.repeat_interleave(groups, dim=1)


def softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over keys; float32 for 16-bit scores, back to their dtype."""
    if scores.dtype in (torch.float16, torch.bfloat16):
        return torch.softmax(scores.float(), dim=-1).to(scores.dtype)
    return torch.softmax(scores, dim=-1)


class Attention(Projections):
    """Multi-head attention (self/cross, GQA) with mask predicates and position encodings; see the module doc."""

    #: the KV-cache slot while a :class:`~.attention_cache.KVCache` is attached (None otherwise)
    kv_cache = None

    def __init__(self, d_model: int, d_ctx: int, heads: int, kv_heads: int, head_dim: int, *, qkv: str = "separate",
                 bias: bool = True, out_bias: bool = True, dropout: float = 0.0, scale: float | None = None,
                 mask: Any = "none", position: Any = "none", cross: bool = False):
        super().__init__(d_model, d_ctx, heads, kv_heads, head_dim, qkv, bias, out_bias)
        self.dropout, self.cross = dropout, cross
        self.scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
        self.mask = mask if isinstance(mask, masks.MaskNode) else masks.parse_mask(mask)
        # position: a YAML value, or (name, params) already parsed
        self.position, self.pos_params = (position[0], dict(position[1])) if isinstance(position, tuple) else \
            positions.parse_position(position)
        self.pos = positions.POSITIONS[self.position]   # the front end's hooks: kind, learnable, query_bias, ...
        self.hooks = pos.hooks_of(self.position)         # their torch implementation
        before = set(self._modules) | set(self._parameters)
        self.hooks.build(self, self.pos_params, heads, head_dim)
        self.table_names = sorted((set(self._modules) | set(self._parameters)) - before)  # what build made

    def use_position_table(self, owner: "Attention") -> None:
        """Read ``owner``'s learned position table instead of this node's own (``position_from``): the same
        Parameter objects, so the state dict holds them once and their gradient sums over every user."""
        for name in self.table_names:
            setattr(self, name, getattr(owner, name))

    @classmethod
    def from_resolved(cls, r: ResolvedAttention, **kwargs: Any) -> "Attention":
        """The module of a resolved attention node (layout, scale, mask and position as shape inference fixed them)."""
        return cls(r.d_model, r.d_ctx, r.heads, r.kv_heads, r.head_dim, scale=r.scale, mask=r.mask,
                   position=(r.position, r.position_params), cross=r.cross, **kwargs)

    def keys_values(self, x: torch.Tensor, context: torch.Tensor | None,
                    positions: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """q, k, v and the query offset, with RoPE (at ``positions`` [B, T] when given) and the KV cache applied
        (k, v: all keys so far)."""
        slot = self.kv_cache
        if self.cross and slot is not None and slot.k is not None:
            return self.project_q(x), slot.k, slot.v, 0  # the context was projected on the first call
        q, k, v = self.project(x, context)
        offset = slot.length if slot is not None and not self.cross else 0
        if self.pos.qk_transform:
            q_pos = positions if positions is not None else torch.arange(offset, offset + q.shape[-2], device=q.device)
            q, k = self.hooks.qk(self, q, k, q_pos)  # self-attention: the new keys sit where the queries do
        if slot is not None:
            k, v = slot.append(k, v, positions)
        return q, k, v, offset

    def position_ids(self, positions: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(q_pos [B, T], k_pos [B, S]) per-row ids after :meth:`keys_values` (keys: the cache's ids so far, else
        the queries' own: self-attention), or None without a ``positions`` input."""
        if positions is None:
            return None
        slot = self.kv_cache
        return positions, slot.pos if slot is not None and slot.pos is not None else positions

    def score_bias(self, q: torch.Tensor, q_len: int, kv_len: int, offset: int,
                   ids: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor | None:
        """The score_bias position term B (unscaled, added after the scale), or None; ``ids``: per-row position ids."""
        return self.hooks.bias(self, q, q_len, kv_len, offset, ids)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                key_padding: torch.Tensor | None = None, doc_ids: torch.Tensor | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v, offset = self.keys_values(x, context, positions)
        ids = self.position_ids(positions)
        k, v = self.repeat_kv(k), self.repeat_kv(v)
        q_len, kv_len = q.shape[-2], k.shape[-2]
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        bias = self.score_bias(q, q_len, kv_len, offset, ids)
        if bias is not None:
            scores = scores + bias
        mask = mask_tensor(self.mask, x.shape[0], q_len, kv_len, offset, lengths=lengths, key_padding=key_padding,
                           doc_ids=doc_ids, device=x.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        p = F.dropout(softmax(scores), self.dropout, self.training)
        o = torch.matmul(p, v)
        extra = self.hooks.values(self, p, q_len, kv_len, offset, ids)
        if extra is not None:
            o = o + extra
        return self.out(self.merge_heads(o))

    def extra_repr(self) -> str:
        return (f"heads={self.heads}, kv_heads={self.kv_heads}, head_dim={self.head_dim}, scale={self.scale:.4g}, "
                f"position={self.position}, cross={self.cross}")


def resolved(ctx: NodeCtx, context_input: bool = True) -> ResolvedAttention:
    """The node's resolved description: the one shape inference stored, else resolved now by the same function."""
    stored = ctx.meta.get(META_KEY)
    if stored is not None:
        return stored
    context = ctx.inputs.get("context") if context_input else None
    connected = {k for k, t in ctx.inputs.items() if t is not None and (context_input or k != "context")}
    return resolve(ctx.params, ctx.in_features, context.shape[-1] if context is not None else None, connected)


def layout(ctx: NodeCtx, context_input: bool = True) -> dict[str, Any]:
    """d_model, d_ctx, heads, kv_heads, head_dim of an attention node (as the front end resolved them)."""
    r = resolved(ctx, context_input)
    return {"d_model": r.d_model, "d_ctx": r.d_ctx, "heads": r.heads, "kv_heads": r.kv_heads, "head_dim": r.head_dim}


def _attention_module(ctx: NodeCtx) -> Attention:
    p = ctx.params
    return Attention.from_resolved(resolved(ctx), qkv=p["qkv"], bias=p["bias"], out_bias=p["out_bias"],
                                   dropout=p["dropout"])


def call_connected(e: Emit) -> str:
    """``self.attn(x, name=var, ...)`` with the first input positional and the other connected ones by name."""
    names = list(e.inputs)
    args = [e.inputs[names[0]]] + [f"{k}={v}" for k, v in list(e.inputs.items())[1:] if v != "None"]
    return f"{e.self}({', '.join(args)})"


def _link_table(ctx: NodeCtx, path: str, path_of: Callable[[str], str]) -> list[str]:
    """``position_from: NODE``: this module reuses NODE's position table (after both exist)."""
    src = ctx.params.get("position_from")
    return [f"{path}.use_position_table({path_of(src)})"] if src and src != ctx.name else []


def _attention_tp(m: Attention, tp: int) -> dict[str, str] | str:
    """Megatron's attention split: q, k, v by output rows (whole heads per rank: H/tp query and G/tp kv heads,
    GQA's grouping kept), out by input columns; the scores and softmax stay per head, so need no communication."""
    if m.fused:
        return "its q, k and v rows are one fused matrix (qkv: fused): a row split would cut across q, k and v"
    if m.pos.score_bias:
        return f"its position term ({m.position}) adds a bias per head"
    if m.heads % tp or m.kv_heads % tp:
        raise ValueError(f"its {m.heads} heads and {m.kv_heads} key/value heads do not divide over tp={tp} ranks")
    return {"q": TP_COLWISE, "k": TP_COLWISE, "v": TP_COLWISE, "out": TP_ROWWISE, "": TP_HEADS}


@torch_op("attention", module=_attention_module, init=_INIT, link=_link_table, tp=_attention_tp)
def attention(ctx: NodeCtx, e: Emit) -> str:
    """``self.attn(x, context=..., lengths=...)``."""
    return call_connected(e)
