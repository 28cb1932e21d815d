"""Torch implementation of Reformer LSH attention (nngraph/ops/attention_lsh.py).

``lsh_attention`` -- :class:`LSHAttention` (Kitaev et al. 2020; seed 002, "Routing-Based Approaches:
Reformer and Performer"). Decomposed, per head (B batch, H heads, R = n_hashes rounds, T positions)::

    q = x W_qkᵀ (+ b), k = q / ‖q‖ (shared QK), v = x W_vᵀ (+ b)            [B, H, T, d]
    bucket_r(t) = argmax([k_t R_r; −k_t R_r])   R_r [d, n_buckets/2]      [B, R, H, T]
    order_r = argsort(bucket_r · T + position)  (by bucket, then position)
    sorted q, k, v, positions, buckets; padded to a multiple of chunk_size c; cut into chunks
    window of chunk i = chunk i−1 ++ chunk i (chunk 0: its own keys only)
    scores = q kᵀ / √d over the window; −∞ (finfo.min) for padding keys, other buckets
             (same_bucket) and later positions (causal); −1e5 for the query's own position
    o_r, lse_r = softmax(scores) v, logsumexp(scores), back in position order
    out = Σ_r softmax_r(lse_r) · o_r, then merge heads and W_out

The rotations R [n_hashes, H, d, n_buckets/2] are a non-persistent buffer drawn (standard normal)
from the node's ``seed`` only, so the hashing is reproducible and identical in torch and ONNX;
the paper redraws them per forward pass, which a fixed graph does not express. Rounds are combined
by their softmax mass without removing keys found by several rounds (as Hugging Face's Reformer).

State: ``qk.weight [H·d, D]``, ``v.weight [H·d, D]`` (+ biases), ``out.weight [D, H·d]`` (+ bias);
init normal(0, 0.02), biases 0, as ``attention``. No KV cache.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Emit, NodeCtx, torch_op
from .attention import _INIT, layout

SELF_SCORE = -1e5  # a query's score for itself: attended only when nothing else is visible


def random_rotations(n_hashes: int, heads: int, head_dim: int, n_buckets: int, seed: int) -> torch.Tensor:
    """R [n_hashes, H, d, n_buckets/2] ~ N(0, 1), from ``seed`` only."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_hashes, heads, head_dim, n_buckets // 2, generator=g, device="cpu")


def lsh_buckets(k: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Angular LSH: k [B, H, T, d], R [n_hashes, H, d, n/2] -> buckets [B, n_hashes, H, T] in [0, n)."""
    proj = torch.einsum("bhtd,rhdk->brhtk", k, rotations.to(k.dtype))
    return torch.cat([proj, -proj], dim=-1).argmax(dim=-1)


class LSHAttention(nn.Module):
    """Shared-QK attention within LSH buckets, chunked (see the module doc)."""

    kv_cache_support = False

    def __init__(self, d_model: int, heads: int, head_dim: int, bias: bool = True, out_bias: bool = True,
                 n_buckets: int = 32, n_hashes: int = 1, chunk_size: int = 64, same_bucket: bool = True,
                 causal: bool = False, seed: int = 0):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.n_buckets, self.n_hashes, self.chunk_size = n_buckets, n_hashes, chunk_size
        self.same_bucket, self.causal, self.seed = same_bucket, causal, seed
        self.qk = nn.Linear(d_model, heads * head_dim, bias=bias)
        self.v = nn.Linear(d_model, heads * head_dim, bias=bias)
        self.out = nn.Linear(heads * head_dim, d_model, bias=out_bias)
        self.register_buffer("rotations", random_rotations(n_hashes, heads, head_dim, n_buckets, seed), persistent=False)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(t.shape[0], t.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def attend(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """LSH attention on per-head q (= unnormalized shared qk) and v [B, H, T, d] -> [B, H, T, d]."""
        b, h, t, d = q.shape
        r, c = self.n_hashes, self.chunk_size
        k = F.normalize(q, dim=-1)
        buckets = lsh_buckets(k, self.rotations)                                  # [B, R, H, T]
        pos = torch.arange(t, device=q.device)
        order = torch.argsort(buckets * t + pos, dim=-1)                          # by bucket, then position
        idx = order.unsqueeze(-1).expand(b, r, h, t, d)

        def gather(x: torch.Tensor) -> torch.Tensor:                             # [B, H, T, d] -> [B, R, H, T, d]
            return x.unsqueeze(1).expand(b, r, h, t, d).gather(3, idx)

        n = (t + c - 1) // c
        pad = n * c - t
        sq, sk, sv = (F.pad(gather(x), (0, 0, 0, pad)).view(b, r, h, n, c, d) for x in (q, k, v))
        spos = F.pad(order, (0, pad), value=-1).view(b, r, h, n, c)              # -1: padding
        sbkt = F.pad(buckets.gather(3, order), (0, pad), value=-1).view(b, r, h, n, c)

        def window(x: torch.Tensor) -> torch.Tensor:                             # chunk i-1 ++ chunk i
            return torch.cat([torch.roll(x, 1, dims=3), x], dim=4)

        kw, vw, pw, bw = window(sk), window(sv), window(spos), window(sbkt)
        scores = torch.matmul(sq, kw.transpose(-2, -1)) / math.sqrt(d)            # [B, R, H, n, c, 2c]
        first = torch.arange(n, device=q.device) == 0
        earlier = torch.arange(2 * c, device=q.device) < c
        visible = (pw >= 0).unsqueeze(-2) & ~(first[:, None, None] & earlier)     # no wrap-around for chunk 0
        if self.same_bucket:
            visible = visible & (sbkt.unsqueeze(-1) == bw.unsqueeze(-2))
        if self.causal:
            visible = visible & (pw.unsqueeze(-2) <= spos.unsqueeze(-1))
        scores = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
        itself = pw.unsqueeze(-2) == spos.unsqueeze(-1)
        scores = scores.masked_fill(itself & visible, SELF_SCORE)
        lse = torch.logsumexp(scores, dim=-1, keepdim=True)
        o = torch.matmul(torch.exp(scores - lse), vw)                             # [B, R, H, n, c, d]
        o, lse = o.view(b, r, h, n * c, d)[:, :, :, :t], lse.view(b, r, h, n * c)[:, :, :, :t]
        undo = torch.argsort(order, dim=-1)
        o = o.gather(3, undo.unsqueeze(-1).expand(b, r, h, t, d))
        lse = lse.gather(3, undo)
        weights = torch.softmax(lse, dim=1)                                       # rounds by softmax mass
        return (o * weights.unsqueeze(-1)).sum(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.attend(self._split(self.qk(x)), self._split(self.v(x)))
        return self.out(o.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.heads * self.head_dim))

    def extra_repr(self) -> str:
        return (f"heads={self.heads}, n_buckets={self.n_buckets}, n_hashes={self.n_hashes}, "
                f"chunk_size={self.chunk_size}, same_bucket={self.same_bucket}, causal={self.causal}, seed={self.seed}")


def _module(ctx: NodeCtx) -> LSHAttention:
    p, lay = ctx.params, layout(ctx, context_input=False)  # the front end's head layout
    return LSHAttention(lay["d_model"], lay["heads"], lay["head_dim"], p["bias"], p["out_bias"], p["n_buckets"], p["n_hashes"],
                        p["chunk_size"], p["same_bucket"], p["causal"], p["seed"])


@torch_op("lsh_attention", init=_INIT, module=_module)
def lsh_attention(ctx: NodeCtx, e: Emit) -> str:
    """``self.attn(x)``."""
    return f"{e.self}({e.x})"
