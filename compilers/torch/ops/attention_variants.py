"""Torch reference implementations of the efficient attention variants (nngraph/ops/attention_variants.py).

All three share ``attention``'s projections (:class:`~.attention.Projections`: ``q``/``k``/``v``/``out``
or fused ``qkv``, same names and init) and map x [B, T, D] to [B, T, D]. Decomposed math:

* ``linear_attention`` (Katharopoulos et al. 2020; seed 002, "Katharopoulos Linear Attention and
  Autoregressive Reformulation"), φ(x) = elu(x) + 1::

      non-causal:  out_i = φ(q_i)ᵀ S / (φ(q_i)ᵀ z + eps),  S = Σ_j φ(k_j) v_jᵀ [d, d],  z = Σ_j φ(k_j)
      causal:      the same sums over j <= i, computed in parallel as
                   A = tril(φ(Q) φ(K)ᵀ), out = A V / (A 1 + eps)
      recurrent:   S_i = S_{i-1} + φ(k_i) v_iᵀ, z_i = z_{i-1} + φ(k_i) (:meth:`LinearAttention.recurrent`,
                   the RNN form; it equals the causal parallel form)

* ``performer_attention`` (FAVOR+, Choromanski et al. 2021; seed 002, "Routing-Based Approaches:
  Reformer and Performer"): positive random features φ(x) = exp(Ωx' − |x'|²/2)/√m with x' = x/d^{1/4}
  and Ω [H, m, d] a non-learned buffer of blocks of orthogonal Gaussian rows (row norms drawn from
  the chi distribution), generated from the node's ``seed`` only; φ(q)·φ(k) is an unbiased estimate
  of exp(q·k/√d). out = φ(Q)(φ(K)ᵀV) / φ(Q)(φ(K)ᵀ1); causal: A = tril(φ(Q)φ(K)ᵀ) as above. The
  exponents are shifted by a max (per query row; one over all keys) for stability -- a constant
  factor that cancels in the ratio.

* ``linformer_attention`` (Wang et al. 2020; seed 000, "Different Types of Transformers"):
  K' = EᵀK, V' = FᵀV with ``proj_k`` E, ``proj_v`` F [max_len, k] (first T rows for an input of
  length T; ``share_kv``: F = E), out = dropout(softmax(Q K'ᵀ/√d)) V'.

None of them supports a KV cache (``kv_cache_support = False``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nngraph.ops.attention_variants import performer_features

from ..registry import Emit, NodeCtx, torch_op
from .attention import _INIT, Projections, layout, softmax


def elu_feature(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = elu(x) + 1 > 0."""
    return F.elu(x) + 1.0


def _base(ctx: NodeCtx) -> dict:
    p = ctx.params
    lay = layout(ctx, context_input=False)
    lay["kv_heads"] = lay["heads"]
    return dict(**lay, qkv=p["qkv"], bias=p["bias"], out_bias=p["out_bias"])


class LinearAttention(Projections):
    """Linear attention with φ = elu + 1 (parallel forward; :meth:`recurrent` is the RNN form)."""

    kv_cache_support = False

    def __init__(self, *args, causal: bool = False, eps: float = 1e-6, **kwargs):
        super().__init__(*args, **kwargs)
        self.causal, self.eps = causal, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.project(x)
        fq, fk = elu_feature(q), elu_feature(k)
        if self.causal:
            a = torch.matmul(fq, fk.transpose(-2, -1)).tril()            # [B, H, T, T]
            o = torch.matmul(a, v) / (a.sum(-1, keepdim=True) + self.eps)
        else:
            s = torch.matmul(fk.transpose(-2, -1), v)                     # S = Σ φ(k_j) v_jᵀ  [B, H, d, d]
            z = fk.sum(dim=-2)                                            # z = Σ φ(k_j)       [B, H, d]
            o = torch.matmul(fq, s) / (torch.matmul(fq, z.unsqueeze(-1)) + self.eps)
        return self.out(self.merge_heads(o))

    def recurrent(self, x: torch.Tensor) -> torch.Tensor:
        """The causal RNN form, one position at a time: S_i = S_{i-1} + φ(k_i)v_iᵀ, z_i = z_{i-1} + φ(k_i)."""
        q, k, v = self.project(x)
        fq, fk = elu_feature(q), elu_feature(k)
        b, h, t, d = q.shape
        s = q.new_zeros(b, h, d, v.shape[-1])
        z = q.new_zeros(b, h, d)
        outs = []
        for i in range(t):
            s = s + fk[:, :, i, :, None] * v[:, :, i, None, :]
            z = z + fk[:, :, i]
            num = torch.einsum("bhd,bhde->bhe", fq[:, :, i], s)
            den = (fq[:, :, i] * z).sum(-1, keepdim=True) + self.eps
            outs.append(num / den)
        return self.out(self.merge_heads(torch.stack(outs, dim=2)))


def orthogonal_features(heads: int, m: int, d: int, seed: int) -> torch.Tensor:
    """Ω [H, m, d]: per head, ⌈m/d⌉ blocks of d orthogonal rows (QR of a Gaussian), rows rescaled to
    chi(d)-distributed norms, so each row is marginally N(0, I_d) (FAVOR+ "ORF")."""
    g = torch.Generator().manual_seed(seed)
    blocks = math.ceil(m / d)
    qmat, _ = torch.linalg.qr(torch.randn(heads, blocks, d, d, generator=g, dtype=torch.float64, device="cpu"))  # batched QR
    w = qmat.transpose(-2, -1).reshape(heads, blocks * d, d)[:, :m]        # orthonormal rows, d per block
    norms = torch.randn(heads, m, d, generator=g, dtype=torch.float64, device="cpu").norm(dim=-1, keepdim=True)
    return (w * norms).to(torch.float32)


class PerformerAttention(Projections):
    """FAVOR+ attention with positive orthogonal random features (see the module doc)."""

    kv_cache_support = False

    def __init__(self, *args, num_features: int | None = None, seed: int = 0, causal: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_features = num_features or performer_features(self.head_dim)
        self.seed, self.causal = seed, causal
        self.register_buffer("omega", orthogonal_features(self.heads, self.num_features, self.head_dim, seed),
                             persistent=False)

    def reset_features(self) -> None:
        """Redraw Ω from ``seed`` (e.g. after building on the meta device)."""
        self.omega = orthogonal_features(self.heads, self.num_features, self.head_dim, self.seed).to(self.omega.device)

    def features(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        """φ(x) [B, H, T, m] for x [B, H, T, d], up to a positive constant per query row / per key set."""
        x = x * self.head_dim ** -0.25
        proj = torch.einsum("bhtd,hmd->bhtm", x, self.omega.to(x.dtype))
        logits = proj - (x * x).sum(-1, keepdim=True) / 2
        shift = logits.amax(dim=-1, keepdim=True) if is_query else logits.amax(dim=(-2, -1), keepdim=True)
        return torch.exp(logits - shift.detach()) / math.sqrt(self.num_features)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """FAVOR+ on per-head q, k, v [B, H, T, d] (no projections): o [B, H, T, d]."""
        fq, fk = self.features(q, True), self.features(k, False)
        if self.causal:
            a = torch.matmul(fq, fk.transpose(-2, -1)).tril()
            return torch.matmul(a, v) / a.sum(-1, keepdim=True)
        kv = torch.matmul(fk.transpose(-2, -1), v)                           # φ(K)ᵀV  [B, H, m, d]
        norm = torch.matmul(fq, fk.sum(dim=-2).unsqueeze(-1))                # φ(Q)(φ(K)ᵀ1)  [B, H, T, 1]
        return torch.matmul(fq, kv) / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.project(x)
        return self.out(self.merge_heads(self.attend(q, k, v)))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, num_features={self.num_features}, seed={self.seed}, causal={self.causal}"


class LinformerAttention(Projections):
    """Softmax attention over keys/values projected along the sequence to k positions."""

    kv_cache_support = False

    def __init__(self, *args, k: int, max_len: int, share_kv: bool = False, dropout: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.dropout, self.share_kv = dropout, share_kv
        self.proj_k = nn.Parameter(torch.empty(max_len, k))
        if not share_kv:
            self.proj_v = nn.Parameter(torch.empty(max_len, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.project(x)
        t = x.shape[1]
        e = self.proj_k[:t]
        f = e if self.share_kv else self.proj_v[:t]
        k = torch.einsum("tk,bhtd->bhkd", e, k)                              # K' = EᵀK  [B, H, k, d]
        v = torch.einsum("tk,bhtd->bhkd", f, v)                              # V' = FᵀV
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        p = F.dropout(softmax(scores), self.dropout, self.training)
        return self.out(self.merge_heads(torch.matmul(p, v)))


def _call(ctx: NodeCtx, e: Emit) -> str:
    return f"{e.self}({e.x})"


_LINFORMER_INIT = {**_INIT, "proj_k": ("normal", {"std": 0.02}), "proj_v": ("normal", {"std": 0.02})}

torch_op("linear_attention", init=_INIT, module=lambda ctx: LinearAttention(
    **_base(ctx), causal=ctx.params["causal"], eps=ctx.params["eps"]))(_call)
torch_op("performer_attention", init=_INIT, module=lambda ctx: PerformerAttention(
    **_base(ctx), num_features=ctx.params["num_features"], seed=ctx.params["seed"], causal=ctx.params["causal"]))(_call)
torch_op("linformer_attention", init=_LINFORMER_INIT, module=lambda ctx: LinformerAttention(
    **_base(ctx), k=ctx.params["k"], max_len=ctx.params["max_len"], share_kv=ctx.params["share_kv"],
    dropout=ctx.params["dropout"]))(_call)
