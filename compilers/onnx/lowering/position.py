"""Export lowering of ``position_embedding`` with a KV cache: positions continue after the cached ones.

The positions are ``past_len + arange(T)`` with ``past_len`` a tensor read from the first past input's
shape (the torch module's cache slot keeps a Python int, which the tracer can confuse with other ints
of the same value). Without a KV cache the torch forward exports as it is.
"""

from __future__ import annotations

from typing import Any

from .registry import lowering


@lowering("position_embedding", kv_only=True)
def position_forward(module: Any, io: Any, x: Any, positions: Any = None) -> Any:
    """PositionEmbedding.forward with positions continuing after the cached ones (a tensor offset)."""
    import torch

    from nngraph.compilers.torch.ops.position import sinusoid_table

    if positions is None:
        positions = torch.arange(x.shape[-2]) + io.past_len
    if module.kind == "learned":
        return x + module.weight[positions]
    return x + sinusoid_table(positions, module.dim, dtype=x.dtype)
