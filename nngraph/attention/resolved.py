"""One attention node, resolved once: the frozen description shape inference stores and every back end reads.

``resolve`` turns an attention node's params and input widths into a :class:`ResolvedAttention`:
the head layout (H query heads, G key/value heads, head width d, :func:`~.layout.layout_of`), the
score scale (1/√d unless given), the parsed mask tree with every fact derived from the mask
registry (:mod:`.analysis`), and the parsed position encoding with its declared back-end hooks
(:class:`~.positions.PositionDef`). The ``attention`` shape rule stores it in
``node.meta["attention"]``; :func:`resolved_of` reads it back (resolving with the same function
for nodes built without shape inference, e.g. in tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import analysis
from .layout import layout_of
from .masks import MASK_INPUTS, MaskNode, parse_mask
from .positions import POSITIONS, PositionDef, parse_position

#: the key of the description in ``Node.meta``
META_KEY = "attention"


@dataclass(frozen=True)
class ResolvedAttention:
    """Heads, scale, mask and position of one attention node, with the facts every back end needs."""

    heads: int                       # H
    kv_heads: int                    # G (divides H; G = 1: multi-query)
    head_dim: int                    # d
    d_model: int                     # D (query width)
    d_ctx: int                       # Dc (key/value source width; D for self-attention)
    scale: float                     # 1/√d unless the node gives one (T5: 1.0)
    cross: bool                      # keys/values from a context input
    mask: MaskNode
    position: str
    position_params: dict[str, Any] = field(default_factory=dict)
    inputs: frozenset[str] = frozenset()   # connected mask inputs (lengths, key_padding, doc_ids)
    row_positions: bool = False      # a ``positions`` [B, T] input gives per-row position ids

    # ----- mask facts (from the mask registry) -----------------------------------
    @cached_property
    def mask_kind(self) -> str:
        """none | causal | mask (see :func:`~.analysis.mask_kind`)."""
        return analysis.mask_kind(self.mask, self.cross)

    @cached_property
    def keeps_diagonal(self) -> bool:
        """No query row can be fully masked (self-attention only)."""
        return analysis.keeps_diagonal(self.mask) and not self.cross

    @cached_property
    def parts(self) -> analysis.MaskParts:
        """The mask split into what fused ops take natively and an explicit rest."""
        return analysis.split_mask(self.mask, self.inputs)

    @cached_property
    def mask_text(self) -> str:
        return analysis.mask_text(self.mask)

    @cached_property
    def data_inputs(self) -> tuple[str, ...]:
        return analysis.data_inputs(self.mask)

    @property
    def fix_empty_rows(self) -> bool:
        """Fused kernels must patch rows with no visible key (they may occur)."""
        return self.mask_kind != "none" and not self.keeps_diagonal

    # ----- position hooks (from the position registry) ---------------------------
    @property
    def pos(self) -> PositionDef:
        """The registered position encoding (its hooks: kind, learnable, query_bias, value_term, rotary)."""
        return POSITIONS[self.position]

    @property
    def position_kind(self) -> str:
        """none | qk (a q/k transform, e.g. RoPE) | bias (a score term, e.g. ALiBi, T5, Shaw)."""
        return "qk" if self.pos.qk_transform else "bias" if self.pos.score_bias else "none"

    @property
    def value_term(self) -> str:
        """What the position adds to the output (Σ_j p_ij a^V_ij, Shaw values), "" if nothing: only kernels
        that expose the attention weights serve it."""
        return self.pos.value_doc if self.pos.value_term(self.position_params) else ""

    @property
    def row_bias(self) -> bool:
        """A score bias computed from per-row position ids: kernels that derive it from indices alone
        (FlexAttention score_mod, banded tiles) cannot serve it."""
        return self.row_positions and self.pos.score_bias

    @property
    def rotary_dim(self) -> int:
        """Dims rotated by a rotary qk transform fused ops can take natively; 0 for other encodings."""
        return self.pos.rotary(self.position_params, self.head_dim) if self.pos.rotary is not None else 0


def resolve(params: dict[str, Any], d_model: int, d_ctx: int | None = None,
            connected: set[str] | frozenset[str] | None = None) -> ResolvedAttention:
    """The :class:`ResolvedAttention` of checked attention params (``connected``: the node's connected inputs)."""
    heads, kv_heads, head_dim = layout_of(params, d_model)
    scale = params.get("scale")
    pname, pparams = parse_position(params.get("position", "none"))
    connected = frozenset(connected or ())
    return ResolvedAttention(
        heads=heads, kv_heads=kv_heads, head_dim=head_dim, d_model=d_model, d_ctx=d_ctx or d_model,
        scale=float(scale) if scale is not None else 1.0 / math.sqrt(head_dim), cross="context" in connected,
        mask=parse_mask(params.get("mask", "none")), position=pname, position_params=dict(pparams),
        inputs=frozenset(connected & set(MASK_INPUTS)), row_positions="positions" in connected)


def resolved_of(node: Any, d_ctx: int | None = None) -> ResolvedAttention:
    """The description stored on an IR node by shape inference (resolved now if the node was never inferred)."""
    got = node.meta.get(META_KEY)
    if got is not None:
        return got
    out = node.out
    d_model = int(out.shape[-1]) if out is not None and isinstance(out.shape[-1], int) else int(node.params.get("d_model", 0))
    return resolve(node.params, d_model, d_ctx, {k for k, r in node.inputs.items() if r is not None})
