"""Torch implementation of ``position_embedding`` (nngraph/ops/position.py).

:class:`PositionEmbedding`: out[b, t] = x[b, t] + P[pos(b, t)] with pos = offset + t, or the
``positions`` input [B, T] when connected (then no offset applies).

* ``learned``: P = ``weight [max_len, dim]`` (seed 002, "Learned Absolute Positional Embeddings";
  GPT-2 ``wpe``, BERT ``position_embeddings``), init normal(0, 0.02);
* ``sinusoidal``: P(pos, 2k) = sin(pos/10000^(2k/d)), P(pos, 2k+1) = cos(pos/10000^(2k/d)) (seed 002,
  "Sinusoidal Encodings"), computed in float32 (float64 for float64 inputs), no state.

offset: the number of tokens already seen while a KV cache is attached (see
:mod:`.attention_cache`), else 0. Forward line: ``self.wpe(x)`` or ``self.wpe(x, positions)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Emit, NodeCtx, torch_op


def sinusoid_table(positions: torch.Tensor, dim: int, base: float = 10000.0,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[..., dim] sinusoidal encodings of integer ``positions`` [...]."""
    work = torch.float64 if dtype == torch.float64 else torch.float32
    k2 = torch.arange(0, dim, 2, device=positions.device, dtype=work)     # 2k
    angles = positions.to(work).unsqueeze(-1) / base ** (k2 / dim)        # [..., dim/2]
    out = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # sin, cos interleaved: dims 2k, 2k+1
    return out.to(dtype)


class PositionEmbedding(nn.Module):
    """Adds absolute position encodings (learned table or sinusoids) to x [..., T, dim]."""

    #: the KV-cache slot while a :class:`~.attention_cache.KVCache` is attached (counts tokens seen)
    kv_cache = None

    def __init__(self, kind: str, dim: int, max_len: int | None = None):
        super().__init__()
        self.kind, self.dim, self.max_len = kind, dim, max_len
        if kind == "learned":
            self.weight = nn.Parameter(torch.empty(max_len, dim))

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is None:
            seq = x.shape[-2]
            offset = 0
            if self.kv_cache is not None:
                offset = self.kv_cache.length
                self.kv_cache.length += seq
            positions = torch.arange(offset, offset + seq, device=x.device)
        if self.kind == "learned":
            return x + self.weight[positions]
        return x + sinusoid_table(positions, self.dim, dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"{self.kind}, dim={self.dim}" + (f", max_len={self.max_len}" if self.max_len else "")


@torch_op("position_embedding", init={"weight": ("normal", {"std": 0.02})},
          module=lambda ctx: PositionEmbedding(ctx.params["type"], ctx.in_features, ctx.params["max_len"]))
def position_embedding(ctx: NodeCtx, e: Emit) -> str:
    """``self.pos(x)`` or ``self.pos(x, positions)``."""
    positions = e.inputs.get("positions", "None")
    return f"{e.self}({e.x})" if positions == "None" else f"{e.self}({e.x}, {positions})"
