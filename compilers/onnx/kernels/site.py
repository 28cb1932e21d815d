"""What an ONNX attention kernel needs to know about one ``attention`` node: pure data, no torch.

:func:`site_of` reads the IR node (params, connected inputs, output type) into an
:class:`AttentionSite`: the head layout, whether it is cross-attention, the position encoding,
and the mask split into the parts fused ONNX ops take as attributes or small inputs
(:class:`MaskParts`):

* ``causal`` -- the mask implies ``kv_idx <= q_idx`` (``causal``, or a causal ``sliding_window``),
* ``window`` -- a causal sliding window w (keys i-w < j <= i; GroupQueryAttention's
  ``local_window_size``),
* ``key_padding`` -- the graph input a ``key_padding`` mask reads (``lengths`` or ``key_padding``),
* ``rest`` -- every other conjunct (prefix-LM, strided, document, ``any``/``not`` trees, ...):
  only an explicit mask tensor expresses it.

Only conjunctions (``all``) are split; anything else is ``rest`` as a whole.
:class:`ExportOptions` are the export settings kernels depend on (opset, KV-cache inputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nngraph.ops import _attn_masks as masks
from nngraph.ops import _attn_positions as positions

from ..opsets import MAX_OPSET

#: ops whose nodes the ONNX attention kernels lower (``attention_lowered``: the torch lowering pass's rewrite)
ATTENTION_OPS = ("attention", "attention_lowered")


@dataclass(frozen=True)
class ExportOptions:
    """Export settings that decide which kernels apply."""

    opset: int = MAX_OPSET          # kernels whose ops need a newer opset do not apply
    kv_cache: bool = False          # past key/value inputs and present outputs per attention node
    expected_seq: int | None = None  # the sequence length the file will mostly see (kernel preference)


@dataclass(frozen=True)
class MaskParts:
    """A mask split into what fused ops take natively and what needs an explicit mask tensor."""

    causal: bool = False
    window: int | None = None
    key_padding: str | None = None             # "lengths" | "key_padding": the graph input read
    rest: masks.MaskNode | None = None         # conjuncts no fused op takes natively (AND of them)

    @property
    def explicit(self) -> bool:
        """True when some conjunct can only be an explicit mask tensor."""
        return self.rest is not None

    def describe(self) -> str:
        bits = (["causal"] if self.causal and self.window is None else []) + \
               ([f"causal sliding window {self.window}"] if self.window is not None else []) + \
               ([f"key padding ({self.key_padding})"] if self.key_padding else []) + \
               (["an explicit mask"] if self.rest is not None else [])
        return " + ".join(bits) or "no mask"


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

    @property
    def rope(self) -> bool:
        return self.position == "rope"

    @property
    def rotary_dim(self) -> int:
        return positions.rotary_dim(self.head_dim, self.pos_params.get("fraction", 1.0)) if self.rope else 0

    @property
    def has_bias(self) -> bool:
        """A score bias computed from positions (ALiBi, T5 buckets, Shaw keys)."""
        return self.position in ("alibi", "t5_bias", "shaw")

    @property
    def shaw_values(self) -> bool:
        """Shaw relative values add Σ p_ij a^V_ij: they need the attention probabilities themselves."""
        return self.position == "shaw" and bool(self.pos_params.get("values"))


def split_mask(node: masks.MaskNode, inputs: set[str]) -> MaskParts:
    """Split a parsed mask into :class:`MaskParts`; ``inputs`` are the node's connected mask inputs."""
    conjuncts = list(node.children) if node.op == "all" else [node]
    causal, window, key_padding, rest = False, None, None, []
    for c in conjuncts:
        if c.op == "leaf" and c.name == "none":
            continue
        if c.op == "leaf" and c.name == "causal":
            causal = True
        elif c.op == "leaf" and c.name == "sliding_window" and c.params.get("causal", True):
            causal = True
            w = int(c.params["window"])
            window = w if window is None else min(window, w)
        elif c.op == "leaf" and c.name == "key_padding" and key_padding is None:
            key_padding = "lengths" if "lengths" in inputs else "key_padding"
        else:
            rest.append(c)
    rest_node = None if not rest else rest[0] if len(rest) == 1 else masks.MaskNode("all", children=tuple(rest))
    return MaskParts(causal, window, key_padding, rest_node)


def site_of(node: Any) -> AttentionSite:
    """The :class:`AttentionSite` of an IR ``attention`` node."""
    p = node.params
    out = node.out
    d_model = int(out.shape[-1]) if out is not None and isinstance(out.shape[-1], int) else int(p.get("d_model", 0))
    heads = int(p["heads"])
    kv_heads = int(p.get("kv_heads") or heads)
    head_dim = int(p.get("head_dim") or d_model // heads)
    connected = {k for k, r in node.inputs.items() if r is not None}
    mask = masks.parse_mask(p.get("mask", "none"))
    pos_name, pos_params = positions.parse_position(p.get("position", "none"))
    scale = p.get("scale")
    return AttentionSite(
        node=node.name, heads=heads, kv_heads=kv_heads, head_dim=head_dim, d_model=d_model,
        cross="context" in connected, scale=float(scale) if scale is not None else 1.0 / math.sqrt(head_dim),
        mask=mask, parts=split_mask(mask, connected), position=pos_name, pos_params=dict(pos_params),
        dtype=out.dtype if out is not None else "float32")
