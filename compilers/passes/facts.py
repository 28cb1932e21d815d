"""What the lowering rules need to know about one attention node, read from the IR (no torch needed).

:class:`AttentionFacts` is built for an ``attention`` node (mask and position specs, heads,
dtype, lengths) or for a fused ``sdpa`` node (q, k, v and an optional additive bias tensor,
see :mod:`nngraph.compilers.passes.rules.fuse_attention`). The mask analysis works on the parsed mask
tree of :mod:`nngraph.ops._attn_masks`:

* ``mask_kind``: ``none`` (no mask), ``causal`` (exactly the causal predicate, self-attention:
  SDPA's ``is_causal``), ``mask`` (any other predicate: a boolean tensor or a FlexAttention
  ``mask_mod``);
* ``data_inputs``: the graph inputs the mask reads (key padding, document ids): its block
  sparsity is unknown until run time;
* ``keeps_diagonal``: every query sees at least itself, so no row is fully masked (a proof by
  the structure of the tree: causal/window/strided/dilated/document/prefix/none keep the
  diagonal, ``all`` needs every child to, ``any`` one child, ``not`` and the input-dependent or
  random masks are not trusted). When a row may be fully masked the reference attends uniformly
  (it fills with the most negative finite value, not -inf) while fused kernels return 0 or NaN,
  so the kernels patch such rows (``fix_empty_rows``).

:func:`block_density` is the fraction of (query block, key block) tiles with at least one
visible pair, evaluated exactly on the mask predicate at a given length (FlexAttention skips
the empty tiles).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from nngraph.ir import Graph, Node
from nngraph.ops import _attn_masks as masks
from nngraph.ops import _attn_positions as positions
from nngraph.types import Dim

#: masks whose predicate is true on the diagonal (q_idx == kv_idx) for every parameter value
_DIAGONAL = {"none", "causal", "sliding_window", "strided", "document", "prefix_lm"}


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
    position_kind: str = "none"          # none | qk (rope) | bias (alibi, t5_bias, shaw)
    shaw_values: bool = False
    bias_input: bool = False             # sdpa node: an additive bias tensor is an input
    bias_learnable: bool = False         # ... computed by nodes (may depend on parameters), not a graph input
    dropout: float = 0.0

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
    node = value if isinstance(value, masks.MaskNode) else masks.parse_mask(value)
    if node.op == "leaf":
        mdef = masks.MASKS[node.name or "none"]
        shown = {k: v for k, v in node.params.items() if v != mdef.params[k].default or mdef.params[k].required}
        return node.name + (f"({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else "")
    return f"{node.op}({', '.join(mask_text(c) for c in node.children)})"


def keeps_diagonal(node: masks.MaskNode) -> bool:
    """True if every query row provably sees at least its own position (see the module doc)."""
    if node.op == "leaf":
        if node.name == "dilated":
            return (node.params.get("window") or 0) >= 1
        return node.name in _DIAGONAL
    kids = [keeps_diagonal(c) for c in node.children]
    if node.op == "all":
        return all(kids)
    if node.op == "any":
        return any(kids)
    return False


def analyse_mask(value: Any, cross: bool) -> dict[str, Any]:
    """mask, mask_kind, mask_text, data_inputs, keeps_diagonal of a mask value."""
    node = value if isinstance(value, masks.MaskNode) else masks.parse_mask(value)
    data = tuple(sorted(masks.used_inputs(node)))
    if node.op == "leaf" and node.name == "none":
        kind = "none"
    elif node.op == "leaf" and node.name == "causal" and not cross:
        kind = "causal"
    else:
        kind = "mask"
    return {"mask": node, "mask_kind": kind, "mask_text": mask_text(node), "data_inputs": data,
            "keeps_diagonal": keeps_diagonal(node) and not cross}


def attention_facts(graph: Graph, node: Node) -> AttentionFacts:
    """Facts of an ``attention`` (or lowered ``attention_lowered``) node."""
    p = node.params
    x = graph.type_of(node.inputs["x"])
    ctx_ref = node.inputs.get("context")
    c = graph.type_of(ctx_ref) if ctx_ref is not None else None
    d_model = x.shape[-1] if x is not None else None
    heads = p["heads"]
    head_dim = p.get("head_dim") or (d_model // heads if isinstance(d_model, int) else None)
    pname, pparams = positions.parse_position(p.get("position", "none"))
    kind = positions.POSITIONS[pname].kind
    pkind = "qk" if kind == "qk_transform" else "bias" if kind == "score_bias" else "none"
    return AttentionFacts(
        node=node.name, op=node.op, heads=heads, kv_heads=p.get("kv_heads") or heads, head_dim=head_dim,
        dtype=x.dtype if x is not None else "float32", q_len=x.shape[1] if x is not None else "seq",
        kv_len=(c.shape[1] if c is not None else x.shape[1] if x is not None else "seq"), cross=c is not None,
        position=pname, position_params=pparams, position_kind=pkind,
        shaw_values=pname == "shaw" and bool(pparams.get("values")), dropout=float(p.get("dropout") or 0.0),
        **analyse_mask(p.get("mask", "none"), c is not None))


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


# ----- block density ------------------------------------------------------------
@functools.lru_cache(maxsize=512)
def _density(mask_key: str, q_len: int, kv_len: int, block: int) -> float:
    import torch

    from nngraph.compilers.torch.ops.attention_masks import mask_tensor

    node = masks.parse_mask(_MASKS_BY_KEY[mask_key])
    nq, nk = -(-q_len // block), -(-kv_len // block)
    rows = max(1, (1 << 22) // max(1, kv_len * block)) * block  # ~4M mask elements per evaluation
    hit = 0
    for lo in range(0, q_len, rows):
        hi = min(q_len, lo + rows)
        m = mask_tensor(node, 1, hi - lo, kv_len, lo)
        if m is None:
            return 1.0
        m = m.reshape(hi - lo, kv_len)
        pad_q, pad_k = (-(hi - lo)) % block, nk * block - kv_len
        if pad_q or pad_k:
            m = torch.nn.functional.pad(m, (0, pad_k, 0, pad_q))
        hit += int(m.view(-1, block, nk, block).any(3).any(1).sum())
    return hit / (nq * nk)


_MASKS_BY_KEY: dict[str, Any] = {}


def block_density(facts: AttentionFacts, kv_len: int, block: int = 128, cap: int = 4096) -> float:
    """Fraction of block×block tiles with a visible pair at ``kv_len`` (an upper bound).

    Leaves that read graph inputs (key padding, documents) are unknown until run time: they are
    taken as "everything visible" (or "nothing" under a ``not``), which bounds the density from
    above. Evaluated at ``cap`` for longer sequences (sparse patterns only get sparser); 1.0 for
    no mask."""
    if facts.mask_kind == "none" or facts.mask is None:
        return 1.0
    bound = _visible_bound(facts.mask)
    if bound.op == "leaf" and bound.name == "none":
        return 1.0
    key = repr(bound)
    _MASKS_BY_KEY.setdefault(key, _mask_value(bound))
    n = min(kv_len, cap)
    q = n if not isinstance(facts.q_len, int) or not facts.cross else min(facts.q_len, cap)
    return _density(key, q, n, block)


def _visible_bound(node: masks.MaskNode, positive: bool = True) -> masks.MaskNode:
    """The mask with every input-reading leaf replaced by all-visible (under an even number of ``not``s)
    or nothing-visible (under an odd number): a data-free mask that allows at least as much."""
    if node.op == "leaf":
        if masks.MASKS[node.name or "none"].needs:
            everything = masks.MaskNode("leaf", "none", {})
            return everything if positive else masks.MaskNode("not", children=(everything,))
        return node
    flip = node.op == "not"
    return masks.MaskNode(node.op, node.name, node.params,
                          tuple(_visible_bound(c, positive != flip) for c in node.children))


def _mask_value(node: masks.MaskNode) -> Any:
    """The YAML-style value of a parsed mask (parse_mask(_mask_value(n)) == n)."""
    if node.op == "leaf":
        return {"type": node.name, **node.params}
    if node.op == "not":
        return {"not": _mask_value(node.children[0])}
    return {node.op: [_mask_value(c) for c in node.children]}
