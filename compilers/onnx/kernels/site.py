"""What an ONNX attention kernel needs to know about one ``attention`` node: pure data, no torch.

:func:`site_of` reads the description shape inference resolved once
(:class:`~nngraph.attention.resolved.ResolvedAttention`) into an :class:`AttentionSite`: the head
layout, whether it is cross-attention, the position encoding with its hooks, and the mask split
into the parts fused ONNX ops take as attributes or small inputs
(:class:`~nngraph.attention.analysis.MaskParts`, from what each mask declared as ``native``):
``causal``, a causal ``window`` (GroupQueryAttention's ``local_window_size``), ``key_padding`` (the
graph input read) and the ``rest`` only an explicit mask tensor expresses.
:class:`ExportOptions` are the export settings kernels depend on (opset, KV-cache inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nngraph.attention import masks
from nngraph.attention.analysis import MaskParts, split_mask
from nngraph.attention.positions import POSITIONS, PositionDef
from nngraph.attention.resolved import ResolvedAttention, resolved_of

from ..opsets import MAX_OPSET

#: ops whose nodes the ONNX attention kernels lower (``attention_lowered``: the torch lowering pass's rewrite)
ATTENTION_OPS = ("attention", "attention_lowered")

__all__ = ["ATTENTION_OPS", "AttentionSite", "ExportOptions", "MaskParts", "site_of", "split_mask"]


@dataclass(frozen=True)
class ExportOptions:
    """Export settings that decide which kernels apply."""

    opset: int = MAX_OPSET          # kernels whose ops need a newer opset do not apply
    kv_cache: bool = False          # past key/value inputs and present outputs per attention node
    expected_seq: int | None = None  # the sequence length the file will mostly see (kernel preference)


@dataclass(frozen=True)
class AttentionSite:
    """One attention node as the ONNX kernels see it."""

    node: str
    heads: int
    kv_heads: int
    head_dim: int
    d_model: int
    cross: bool
    scale: float
    mask: masks.MaskNode
    parts: MaskParts
    position: str
    pos_params: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    resolved: ResolvedAttention | None = None
    row_positions: bool = False     # a ``positions`` [B, T] input gives per-row position ids

    @property
    def pos(self) -> PositionDef:
        """The position encoding's registration (its back-end hooks)."""
        return POSITIONS[self.position]

    @property
    def rope(self) -> bool:
        """A rotary q/k transform fused ops take natively (cos/sin caches)."""
        return self.pos.rotary is not None

    @property
    def rotary_dim(self) -> int:
        return self.pos.rotary(self.pos_params, self.head_dim) if self.pos.rotary is not None else 0

    @property
    def has_bias(self) -> bool:
        """A score bias computed from positions (ALiBi, T5 buckets, Shaw keys)."""
        return self.pos.score_bias

    @property
    def query_bias(self) -> bool:
        """The score bias reads the queries (Shaw keys: q·a^K), so kernels pass the query heads to it."""
        return self.pos.query_bias

    def row_ids_unserved(self, options: ExportOptions) -> str | None:
        """Why an export cannot serve this node's per-row position ids: a score bias over cached keys would need
        the past keys' ids, which the KV-cache inputs do not carry (RoPE is fine: cached keys are rotated)."""
        if self.row_positions and self.has_bias and options.kv_cache:
            return (f"position {self.position} with a positions input and a KV cache: the past keys' position ids "
                    "are not an export input (export without --kv-cache, or use RoPE)")
        return None

    @property
    def value_term(self) -> bool:
        """The position adds Σ p_ij a^V_ij (Shaw values): it needs the attention probabilities themselves."""
        return self.pos.value_term(self.pos_params)


def site_of(node: Any) -> AttentionSite:
    """The :class:`AttentionSite` of an IR ``attention`` node (from its resolved description)."""
    r = resolved_of(node)
    out = node.out
    return AttentionSite(
        node=node.name, heads=r.heads, kv_heads=r.kv_heads, head_dim=r.head_dim, d_model=r.d_model, cross=r.cross,
        scale=r.scale, mask=r.mask, parts=r.parts, position=r.position, pos_params=dict(r.position_params),
        dtype=out.dtype if out is not None else "float32", resolved=r, row_positions=r.row_positions)
