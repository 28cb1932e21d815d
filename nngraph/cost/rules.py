"""What an op's FLOP rule sees, and the counting helpers the rules share.

Each op states its forward FLOPs at its registration (``@op(..., flops=rule)``); a rule receives a
:class:`CostCtx` — the node's params, its input and output shapes made concrete at the sizes the user
gave (``--dim seq=1024``), its resolved metadata — and returns an int. FLOPs follow torch's
``FlopCounterMode`` convention so the two can be compared: a multiply-add counts 2, only contractions
count (matrix products, convolutions, attention scores and values); elementwise ops, normalizations,
softmax and indexing count 0 (their cost is memory traffic, which the roofline prices by bytes).

Backward FLOPs (training) follow the same convention: the default, :func:`default_backward`, is a weight
gradient per product (``dW = Xᵀ dY``, as many FLOPs as the forward) plus an input gradient per product
(``dX = dY Wᵀ``, as many again) when an input needs one -- graph inputs are data and need none, so the first
layer's backward is half the others'. An op whose products are not all "input × weight" registers its own
``backward=`` rule (attention's scores, a recurrence's hidden state, a product of two activations).

Attention counts the query-key pairs its mask leaves visible (``CostCtx.dense_attention`` False, the
default) or every pair (True: what a kernel that materializes the whole score matrix executes, and what
FlopCounterMode sees on the decomposed reference math).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

Shape = tuple[int, ...]


@dataclass
class CostCtx:
    """One node at concrete sizes: params, input/output shapes, meta, and how to count attention."""

    node: Any                                   # nngraph.ir.Node
    params: dict[str, Any]
    inputs: dict[str, Shape | None]
    outputs: dict[str, Shape]
    variadic: list[Shape] = field(default_factory=list)
    dense_attention: bool = False
    #: training: which inputs need a gradient (by input name; ``"*"`` for any variadic one), whether the node
    #: has weights (its own or shared), and its forward FLOPs (what backward rules scale)
    grads: dict[str, bool] = field(default_factory=dict)
    weights: bool = False
    forward: int = 0

    def needs_grad(self, name: str | None = None) -> bool:
        """Whether input ``name`` (any input when None) needs a gradient."""
        return any(self.grads.values()) if name is None else self.grads.get(name, False)

    @property
    def x(self) -> Shape:
        """The first connected input's shape."""
        first = next((s for s in self.inputs.values() if s is not None), None)
        return first if first is not None else self.variadic[0]

    @property
    def out(self) -> Shape:
        """The first output's shape."""
        return next(iter(self.outputs.values()))

    @property
    def meta(self) -> dict[str, Any]:
        """What shape inference resolved for the back ends (``node.meta``)."""
        return self.node.meta


def rows(shape: Sequence[int]) -> int:
    """Product of all dims but the last: the number of vectors a dense layer maps."""
    return math.prod(shape[:-1])


def dense(n_rows: int, d_in: int, d_out: int) -> int:
    """FLOPs of ``[n, d_in] @ [d_in, d_out]``: 2·n·d_in·d_out (a bias add is not counted)."""
    return 2 * n_rows * d_in * d_out


def default_backward(c: CostCtx) -> int:
    """Backward FLOPs of a node whose products are each "input × weight": forward × ([has weights] + [an input
    needs a gradient]) -- ``dW = Xᵀ dY`` and ``dX = dY Wᵀ`` cost one forward product each."""
    return c.forward * (int(c.weights) + int(c.needs_grad()))


def _value(mask: Any) -> str:
    from ..attention.analysis import mask_value

    return json.dumps(mask_value(mask), sort_keys=True)


def visible_pairs(mask: Any, q_len: int, kv_len: int) -> int:
    """Σ over query rows of the keys the mask lets it see (graph-input masks counted as all-visible: an upper bound).

    Key padding and document masks depend on data; :func:`~nngraph.attention.analysis.visible_bound`
    replaces them with all-visible, so the count is the most the node can execute."""
    from ..attention.analysis import visible_bound

    return _pairs(_value(visible_bound(mask)), q_len, kv_len)


#: closed forms of the commonest masks (no predicate calls: validate checks ``expect:`` with these)
_CLOSED = {'{"type": "none"}': lambda t, s: t * s,
           '{"type": "causal"}': lambda t, s: sum(min(i + 1, s) for i in range(t)) if t != s else t * (t + 1) // 2}


@lru_cache(maxsize=256)
def _pairs(value: str, q_len: int, kv_len: int) -> int:
    from ..attention.masks import predicate

    if value in _CLOSED:
        return _CLOSED[value](q_len, kv_len)
    fn = predicate(json.loads(value))
    ctx = {"q_len": q_len, "kv_len": kv_len}
    try:  # one vectorized call per query row where numpy is installed (it is with the torch extra)
        import numpy as np

        keys = np.arange(kv_len)
        return int(sum(int(np.count_nonzero(np.broadcast_to(fn(0, 0, q, keys, **ctx), (kv_len,))))
                       for q in range(q_len)))
    except (ImportError, TypeError, ValueError):
        return sum(1 for q in range(q_len) for k in range(kv_len) if fn(0, 0, q, k, **ctx))
