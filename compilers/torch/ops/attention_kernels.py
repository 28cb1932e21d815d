"""Lowered attention: the kernels the lowering pass (compilers/passes) chooses, behind the same parameters.

Two torch ops, both produced by passes, never written in specs:

``attention_lowered``
    An ``attention`` node with a ``kernel`` plan (nngraph.compilers.passes.lowering). Its module is a
    :class:`LoweredAttention`: the reference :class:`~.attention.Attention` module itself (built by
    the ``attention`` factory, so the same parameter names, init and RNG stream — a lowered model
    loads the reference's weights and vice versa) whose ``forward`` picks a *tier* of the plan
    per call — the first whose ``min_kv`` <= the key length and which can serve the call (a
    backward when gradients are on, dropout in training) — and runs the tier's kernel, found in the
    kernel registry (:mod:`nngraph.compilers.kernels`, one file per kernel; its ``run`` names the code):

    * ``reference``: the unmodified reference forward (the oracle);
    * ``sdpa``: ``F.scaled_dot_product_attention`` (:func:`sdpa_core`), backends pinned with
      ``torch.nn.attention.sdpa_kernel`` (the plan's list; MATH is always appended so a module
      moved to another device still runs);
    * ``local``: banded tiles for sliding-window style masks (:mod:`.attention_kernels_local`);
    * ``flex``: compiled FlexAttention (:mod:`.attention_kernels_flex`).

    ``last_kernel`` records the tier used by the latest call.
``sdpa``
    Attention written out of primitives and fused by the fusion pass: q, k, v (+ an additive
    bias), ``scale``, ``dropout``, optional plan. :func:`fused_sdpa` runs the written-out math
    (reference) or SDPA.

Rows with no visible key: the reference fills masked scores with the dtype's most negative
finite value, so such a row attends uniformly (the mean of v); SDPA with a boolean mask returns 0
and FlexAttention 0 (lse = -inf). Plans mark masks that can produce such rows
(``fix_empty_rows``) and the kernels put the mean of v there, so every kernel equals the reference.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...kernels import get_kernel, run_of, tiers_text
from ..registry import Emit, NodeCtx, get_impl, torch_op
from .attention import Attention, call_connected
from .attention_masks import mask_tensor

_REFERENCE = {"kernel": "reference", "min_kv": 0, "backward": True}


def sdpa_backends(tier: dict[str, Any]) -> list[Any]:
    """The SDPBackend list to pin: the plan's, then MATH (always available)."""
    from torch.nn.attention import SDPBackend

    names = list(tier.get("backends") or []) + ["MATH"]
    out = []
    for n in names:
        b = getattr(SDPBackend, n, None)
        if b is not None and b not in out:
            out.append(b)
    return out


def pick_tier(tiers: list[dict[str, Any]] | None, kv_len: int, q_len: int, needs_grad: bool,
              dropout_active: bool) -> dict[str, Any]:
    """The first tier that fits the call (see the module doc); the reference if none does."""
    for t in tiers or []:
        if kv_len < t.get("min_kv", 0) or q_len < t.get("min_q", 0):
            continue
        if needs_grad and not t.get("backward", True):
            continue
        k = get_kernel(t["kernel"])
        if k is None or (dropout_active and not k.dropout):  # not a torch kernel, or one without dropout
            continue
        return t
    return _REFERENCE


def _empty_rows_to_mean(o: torch.Tensor, empty: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rows marked ``empty`` [.., T, 1] get the mean of v over the keys (the reference's uniform attention)."""
    return torch.where(empty, v.mean(-2, keepdim=True).to(o.dtype), o)


def sdpa_core(m: Attention, tier: dict[str, Any], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int,
              batch: int, inputs: dict[str, torch.Tensor | None], needs_grad: bool = False,
              ids: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Attention of q [B, H, T, d] over k, v [B, G, S, d] with SDPA; returns [B, H, T, d] (``ids``: per-row
    position ids of a score bias)."""
    from torch.nn.attention import sdpa_kernel

    q_len, kv_len = q.shape[-2], k.shape[-2]
    bias = m.score_bias(q, q_len, kv_len, offset, ids)
    is_causal, mask = False, None
    if tier["variant"] == "causal" and bias is None and q_len == kv_len and offset == 0:
        is_causal = True
    elif tier["variant"] != "none":
        mask = mask_tensor(m.mask, batch, q_len, kv_len, offset, device=q.device, **inputs)
    if bias is not None:
        attn = bias.to(q.dtype)
        if mask is not None:
            attn = attn.masked_fill(~mask, torch.finfo(q.dtype).min)
    else:
        attn = mask
    gqa = bool(tier.get("gqa")) and m.kv_heads < m.heads
    if not gqa:
        k, v = m.repeat_kv(k), m.repeat_kv(v)
    drop = m.dropout if m.training else 0.0
    with sdpa_kernel(sdpa_backends(tier)):
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn, dropout_p=drop, is_causal=is_causal,
                                           scale=m.scale, **({"enable_gqa": True} if gqa else {}))
    if tier.get("fix_empty_rows") and mask is not None:  # also with a bias: the reference gives such rows no gradient
        o = _empty_rows_to_mean(o, ~mask.any(-1, keepdim=True), m.repeat_kv(v) if gqa else v)
    return o


class LoweredAttention(Attention):
    """The reference attention module running the kernels of a lowering plan (see the module doc)."""

    plan: dict[str, Any] = {"tiers": []}
    last_kernel: str | None = None

    @classmethod
    def from_reference(cls, module: Attention, plan: dict[str, Any]) -> "LoweredAttention":
        """Turn a built reference module into a lowered one in place (parameters untouched)."""
        module.__class__ = cls
        module.plan = plan
        return module  # type: ignore[return-value]

    def _kv_len(self, x: torch.Tensor, context: torch.Tensor | None) -> int:
        slot = self.kv_cache
        if self.cross:
            if slot is not None and slot.k is not None:
                return slot.k.shape[-2]
            return context.shape[1] if context is not None else x.shape[1]
        return x.shape[1] + (slot.length if slot is not None else 0)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                key_padding: torch.Tensor | None = None, doc_ids: torch.Tensor | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or (context is not None and context.requires_grad)
            or any(p.requires_grad for p in self.parameters()))
        tier = pick_tier(self.plan.get("tiers"), self._kv_len(x, context), x.shape[1], needs_grad,
                         self.training and self.dropout > 0)
        self.last_kernel = tier["kernel"]
        core = run_of(tier["kernel"])  # the kernel's torch code (registry: nngraph.compilers.kernels)
        if core is None:  # the reference: the unmodified forward
            return super().forward(x, context, lengths, key_padding, doc_ids, positions)
        q, k, v, offset = self.keys_values(x, context, positions)
        inputs = {"lengths": lengths, "key_padding": key_padding, "doc_ids": doc_ids}
        ids = self.position_ids(positions) if self.pos.score_bias else None
        # per-row ids reach only kernels whose check accepts them for a score bias (sdpa); RoPE is applied above
        o = core(self, tier, q, k, v, offset, x.shape[0], inputs, needs_grad, **({"ids": ids} if ids else {}))
        return self.out(self.merge_heads(o))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", kernel={tiers_text(self.plan.get('tiers') or [_REFERENCE])}"


def _lowered_module(ctx: NodeCtx) -> LoweredAttention:
    reference = get_impl("attention")
    assert reference is not None and reference.module is not None
    return LoweredAttention.from_reference(reference.module(ctx), ctx.params.get("kernel") or {"tiers": []})


def _reference_init(ctx: NodeCtx) -> dict:
    reference = get_impl("attention")
    return reference.default_init(ctx) if reference is not None else {}


@torch_op("attention_lowered", module=_lowered_module, init=_reference_init)
def attention_lowered(ctx: NodeCtx, e: Emit) -> str:
    """``self.attn(x, context=..., ...)``: the same call as the reference attention."""
    return call_connected(e)


# ----- the fused sdpa core op -----------------------------------------------------------
def _reference_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, scale: float,
                    dropout: float, training: bool) -> torch.Tensor:
    s = torch.matmul(q, k.transpose(-2, -1)) * scale
    if bias is not None:
        s = s + bias
    return torch.matmul(F.dropout(torch.softmax(s, dim=-1), p=dropout, training=training), v)


def fused_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None, *, scale: float,
               dropout: float = 0.0, causal: bool = False, training: bool = False,
               plan: dict[str, Any] | None = None) -> torch.Tensor:
    """softmax(q kᵀ·scale + bias) v over the last two dims (batch dims broadcast), by the plan's kernel."""
    if causal:
        t, s = q.shape[-2], k.shape[-2]
        tri = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
        bias = (bias if bias is not None else 0) + torch.zeros(t, s, dtype=q.dtype, device=q.device).masked_fill(
            ~tri, torch.finfo(q.dtype).min)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v) + ((bias,) if bias is not None else ()))
    tier = pick_tier((plan or {}).get("tiers"), k.shape[-2], q.shape[-2], needs_grad, training and dropout > 0)
    if tier["kernel"] != "sdpa":
        return _reference_sdpa(q, k, v, bias, scale, dropout, training)
    from torch.nn.attention import sdpa_kernel

    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q, k, v = (t.expand(*batch, *t.shape[-2:]) for t in (q, k, v))
    shape4 = (-1, 1) if len(batch) != 2 else None
    if shape4 is not None:  # SDPA wants [N, H, T, d]: fold other batch ranks into N
        q, k, v = (t.reshape(-1, 1, *t.shape[-2:]) for t in (q, k, v))
        if bias is not None:
            bias = bias.expand(*batch, *bias.shape[-2:]).reshape(-1, 1, *bias.shape[-2:])
    attn = bias.to(q.dtype) if bias is not None else None
    with sdpa_kernel(sdpa_backends(tier)):
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn, dropout_p=dropout if training else 0.0,
                                           scale=scale)
    return o.reshape(*batch, *o.shape[-2:]) if shape4 is not None else o


@torch_op("sdpa")
def sdpa(ctx: NodeCtx, e: Emit) -> str:
    """``nng.ops.attention_kernels.fused_sdpa(q, k, v, bias, scale=..., dropout=..., training=self.training, plan=...)``."""
    p = ctx.params
    return (f"nng.ops.attention_kernels.fused_sdpa({e.inputs['q']}, {e.inputs['k']}, {e.inputs['v']}, "
            f"{e.inputs.get('bias', 'None')}, scale={float(p['scale'])!r}, dropout={float(p.get('dropout', 0.0))!r}, "
            f"causal={bool(p.get('causal'))!r}, training=self.training, plan={p.get('kernel')!r})")
