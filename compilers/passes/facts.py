"""What the lowering rules need to know about one attention node, read from the IR (no torch needed).

:class:`AttentionFacts` is built for an ``attention`` node from the description shape inference
resolved once (:class:`~nngraph.attention.resolved.ResolvedAttention`: heads, mask tree with the
facts every mask declared at registration, position with its hooks), or for a fused ``sdpa`` node
(q, k, v and an optional additive bias tensor, see :mod:`nngraph.compilers.passes.rules.fuse_attention`).
The mask facts (``mask_kind``, ``data_inputs``, ``keeps_diagonal``) are defined in
:mod:`nngraph.attention.analysis`.

The block density FlexAttention's cost uses is :func:`nngraph.compilers.kernels.density.block_density`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nngraph.attention import analysis
from nngraph.attention import masks as masks
from nngraph.attention.resolved import resolved_of
from nngraph.ir import Graph, Node
from nngraph.types import Dim


@dataclass(frozen=True)
class AttentionFacts:
    """One attention node as the lowering rules see it."""

    node: str
    op: str                              # "attention" or "sdpa" (fused)
    heads: int | None
    kv_heads: int | None
    head_dim: int | None
    dtype: str                           # the graph's dtype of the queries
    q_len: Dim
    kv_len: Dim
    cross: bool = False
    mask: Any = None                     # parsed MaskNode (attention nodes)
    mask_kind: str = "none"              # none | causal | mask
    mask_text: str = "none"
    data_inputs: tuple[str, ...] = ()
    keeps_diagonal: bool = True
    position: str = "none"
    position_params: dict = field(default_factory=dict)
    position_kind: str = "none"          # none | qk (a q/k transform) | bias (a score term)
    value_term: str = ""                 # what the position adds to the output (needs the weights), "" if nothing
    bias_input: bool = False             # sdpa node: an additive bias tensor is an input
    bias_learnable: bool = False         # the score term has parameters (a learnable position table, or an sdpa
    #                                      bias computed by nodes that may hold some rather than a graph input)
    dropout: float = 0.0
    row_bias: bool = False               # a score bias from per-row position ids (a ``positions`` input)

    @property
    def fix_empty_rows(self) -> bool:
        """Fused kernels must patch rows with no visible key: the mask may leave one (see keeps_diagonal)."""
        return self.mask_kind != "none" and not self.keeps_diagonal

    @property
    def has_bias(self) -> bool:
        """An additive score term (ALiBi/T5/Shaw or a bias tensor)."""
        return self.position_kind == "bias" or self.bias_input

    def length(self, default: int | None = None) -> int | None:
        """The key length if concrete, else ``default``."""
        return self.kv_len if isinstance(self.kv_len, int) else default

    def units(self, kv_len: int, q_len: int | None = None) -> float:
        """heads·head_dim·q_len·kv_len at batch 1 (the cost model's work unit)."""
        q = q_len if q_len is not None else (self.q_len if isinstance(self.q_len, int) else kv_len)
        return float((self.heads or 1) * (self.head_dim or 64) * q * kv_len)


def mask_text(value: Any) -> str:
    """A short text of a mask value: ``causal``, ``sliding_window(window=256)``, ``any(...)``."""
    return analysis.mask_text(value if isinstance(value, masks.MaskNode) else masks.parse_mask(value))


def attention_facts(graph: Graph, node: Node) -> AttentionFacts:
    """Facts of an ``attention`` (or lowered ``attention_lowered``) node, from its resolved description."""
    x = graph.type_of(node.inputs["x"])
    ctx_ref = node.inputs.get("context")
    c = graph.type_of(ctx_ref) if ctx_ref is not None else None
    r = resolved_of(node)
    return AttentionFacts(
        node=node.name, op=node.op, heads=r.heads, kv_heads=r.kv_heads, head_dim=r.head_dim,
        dtype=x.dtype if x is not None else "float32", q_len=x.shape[1] if x is not None else "seq",
        kv_len=(c.shape[1] if c is not None else x.shape[1] if x is not None else "seq"), cross=r.cross,
        mask=r.mask, mask_kind=r.mask_kind, mask_text=r.mask_text, data_inputs=r.data_inputs,
        keeps_diagonal=r.keeps_diagonal, position=r.position, position_params=dict(r.position_params),
        position_kind=r.position_kind, value_term=r.value_term, bias_learnable=r.pos.learnable,
        dropout=float(node.params.get("dropout") or 0.0), row_bias=r.row_bias)


def sdpa_facts(graph: Graph, node: Node) -> AttentionFacts:
    """Facts of a fused ``sdpa`` node: q [.., H, T, d], k, v [.., G, S, d], optional additive bias."""
    q = graph.type_of(node.inputs["q"])
    k = graph.type_of(node.inputs["k"])
    heads = q.shape[-3] if q is not None and q.rank >= 3 and isinstance(q.shape[-3], int) else None
    kv_heads = k.shape[-3] if k is not None and k.rank >= 3 and isinstance(k.shape[-3], int) else None
    head_dim = q.shape[-1] if q is not None and isinstance(q.shape[-1], int) else None
    causal = bool(node.params.get("causal"))
    return AttentionFacts(
        node=node.name, op=node.op, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
        dtype=q.dtype if q is not None else "float32", q_len=q.shape[-2] if q is not None else "seq",
        kv_len=k.shape[-2] if k is not None else "seq", mask_kind="causal" if causal else "none",
        mask_text=("causal" if causal else "none") + (" + bias input" if node.inputs.get("bias") is not None else ""),
        bias_input=node.inputs.get("bias") is not None,
        bias_learnable=node.inputs.get("bias") is not None and node.inputs["bias"].node not in graph.inputs,
        dropout=float(node.params.get("dropout") or 0.0))


FACTS = {"attention": attention_facts, "attention_lowered": attention_facts, "sdpa": sdpa_facts}


def facts_of(graph: Graph, node: Node) -> AttentionFacts | None:
    """Facts for an attention-like node, or None for other ops."""
    fn = FACTS.get(node.op)
    return fn(graph, node) if fn is not None else None
