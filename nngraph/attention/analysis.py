"""Every fact back ends need about a parsed mask tree, derived once from what each mask declared at registration.

The leaves' facts come from :func:`~nngraph.attention.masks.register_mask` (``diagonal``, ``table``,
``native``, ``needs``, ``reach``); the combinators follow logic:

* ``keeps_diagonal``: every query sees at least itself, so no row is fully masked — ``all`` needs every
  child to keep the diagonal, ``any`` one child, ``not`` is not trusted; cross-attention never (query and
  key positions index different sequences). When a row may be fully masked the reference attends
  uniformly (it fills with the most negative finite value, not -inf) while fused kernels return 0 or NaN,
  so the kernels patch such rows (``fix_empty_rows``).
* ``kind``: ``none`` (the tree hides nothing), ``causal`` (exactly the causal predicate on
  self-attention: SDPA's ``is_causal``), ``mask`` (any other predicate: a boolean tensor or a
  FlexAttention ``mask_mod``).
* :func:`split_mask`: the conjuncts of an ``all`` that fused ONNX ops take natively (causal flag,
  causal sliding window, key padding) and the ``rest`` only an explicit mask tensor expresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .bands import Band, union_of
from .masks import MASKS, MaskNode, Native


def _leaf(node: MaskNode) -> Any:
    return MASKS[node.name or "none"]


def native_of(node: MaskNode) -> Native | None:
    """The native form of a leaf (None for combinators and leaves only a mask tensor expresses)."""
    return _leaf(node).native_form(node.params) if node.op == "leaf" else None


def keeps_diagonal(node: MaskNode) -> bool:
    """True if every query row provably sees at least its own position (see the module doc)."""
    if node.op == "leaf":
        return _leaf(node).keeps_diagonal(node.params)
    kids = [keeps_diagonal(c) for c in node.children]
    if node.op == "all":
        return all(kids)
    if node.op == "any":
        return any(kids)
    return False


def hides_nothing(node: MaskNode) -> bool:
    """The tree is a single leaf that hides no pair (``mask: none``)."""
    native = native_of(node)
    return native is not None and native.empty


def mask_kind(node: MaskNode, cross: bool) -> str:
    """``none`` | ``causal`` (exactly is_causal, self-attention) | ``mask`` (see the module doc)."""
    native = native_of(node)
    if native is not None and native.empty:
        return "none"
    if native == Native(causal=True) and not cross:
        return "causal"
    return "mask"


def table_leaves(node: MaskNode) -> list[MaskNode]:
    """Leaves with no pointwise tensor form (declared with a ``table``, e.g. BigBird's random rows)."""
    return [leaf for leaf in node.leaves() if _leaf(leaf).table is not None]


def data_inputs(node: MaskNode) -> tuple[str, ...]:
    """The graph inputs the tree may read (its block sparsity is unknown until run time)."""
    return tuple(sorted({i for leaf in node.leaves() for i in _leaf(leaf).needs}))


def mask_text(node: MaskNode) -> str:
    """A short text of a mask: ``causal``, ``sliding_window(window=256)``, ``any(...)``."""
    if node.op == "leaf":
        mdef = _leaf(node)
        shown = {k: v for k, v in node.params.items() if v != mdef.params[k].default or mdef.params[k].required}
        return (node.name or "none") + (f"({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else "")
    return f"{node.op}({', '.join(mask_text(c) for c in node.children)})"


def visible_bound(node: MaskNode, positive: bool = True) -> MaskNode:
    """The mask with every input-reading leaf replaced by all-visible (under an even number of ``not``s)
    or nothing-visible (under an odd number): a data-free mask that allows at least as much."""
    if node.op == "leaf":
        if _leaf(node).needs:
            everything = MaskNode("leaf", "none", {})
            return everything if positive else MaskNode("not", children=(everything,))
        return node
    flip = node.op == "not"
    return MaskNode(node.op, node.name, node.params, tuple(visible_bound(c, positive != flip) for c in node.children))


def mask_value(node: MaskNode) -> Any:
    """The YAML-style value of a parsed mask (``parse_mask(mask_value(n)) == n``)."""
    if node.op == "leaf":
        return {"type": node.name, **node.params}
    if node.op == "not":
        return {"not": mask_value(node.children[0])}
    return {node.op: [mask_value(c) for c in node.children]}


@dataclass(frozen=True)
class MaskParts:
    """A mask split into what fused ops take natively and what needs an explicit mask tensor."""

    causal: bool = False
    window: int | None = None
    key_padding: str | None = None             # "lengths" | "key_padding": the graph input read
    rest: MaskNode | None = None               # conjuncts no fused op takes natively (AND of them)
    natives: tuple[MaskNode, ...] = ()         # the conjuncts taken natively, as they were written

    def to_tensor(self, *, causal: bool = False, window: bool = False, key_padding: bool = False) -> MaskNode | None:
        """The AND of ``rest`` and the native conjuncts a kernel cannot take natively after all: causal ones
        (``causal``), causal windows (``window``), key padding (``key_padding``); None when nothing is left."""
        def wanted(n: Native) -> bool:
            return (window and n.window is not None) or (causal and n.causal and n.window is None) or \
                (key_padding and n.key_padding)

        kids = [c for c in self.natives if wanted(native_of(c) or Native())] + ([self.rest] if self.rest else [])
        return None if not kids else kids[0] if len(kids) == 1 else MaskNode("all", children=tuple(kids))

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


def split_mask(node: MaskNode, inputs: set[str] | frozenset[str]) -> MaskParts:
    """Split a parsed mask into :class:`MaskParts` (only ``all`` is split; anything else is one conjunct);
    ``inputs`` are the node's connected mask inputs. A second key-padding conjunct goes to ``rest``."""
    conjuncts = list(node.children) if node.op == "all" else [node]
    causal, window, key_padding, rest, natives = False, None, None, [], []
    for c in conjuncts:
        native = native_of(c)
        if native is None or (native.key_padding and key_padding is not None):
            rest.append(c)
            continue
        natives.append(c)
        causal = causal or native.causal
        if native.window is not None:
            window = native.window if window is None else min(window, native.window)
        if native.key_padding:
            key_padding = "lengths" if "lengths" in inputs else "key_padding"
    rest_node = None if not rest else rest[0] if len(rest) == 1 else MaskNode("all", children=tuple(rest))
    return MaskParts(causal, window, key_padding, rest_node, tuple(natives))


def band_of(node: Any) -> Band | None:
    """The band of a parsed mask tree (:class:`~nngraph.attention.masks.MaskNode`), or None if unbounded."""
    if node.op == "leaf":
        mdef = _leaf(node)
        return mdef.reach(**node.params) if mdef.reach is not None else None
    if node.op == "not":
        return None
    kids = [band_of(c) for c in node.children]
    if node.op == "any":
        return None if any(k is None for k in kids) else union_of(kids)
    bounded = [k for k in kids if k is not None]
    return min(bounded, key=Band.size) if bounded else None


def has_band(node: Any) -> bool:
    """The mask's visible pairs lie in a band around the diagonal (plus global rows/columns): a banded kernel applies."""
    band = band_of(node)
    return band is not None and band.left is not None


def key_reach(node: MaskNode) -> tuple[int | None, int | None]:
    """How far a query may look back and ahead: (left, right) with every visible pair inside
    ``i - left <= j <= i + right`` (None: unbounded that side). From the band (no global rows or columns)
    and a causal conjunct of a top-level ``all`` (right 0): what a tiled kernel may skip."""
    kids = list(node.children) if node.op == "all" else [node]
    causal = any((native_of(c) or Native()).causal for c in kids)
    band = band_of(node)
    left, right = (band.left, band.right) if band is not None and band.left is not None and not (
        band.rows or band.cols) else (None, None)
    if causal:
        right = 0 if right is None else min(right, 0)
    return left, right
