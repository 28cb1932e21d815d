"""Q/K/V projection biases -> the ``bias`` input of ``com.microsoft.MultiHeadAttention`` (added inside the kernel).

Pattern (anchor: the ``MultiHeadAttention`` the ``ort-mha`` kernel emits)::

    q = Add(MatMul(x, Wq), bq);  k = Add(MatMul(c, Wk), bk);  v = Add(MatMul(c, Wv), bv)
    y = MultiHeadAttention(q, k, v, , key_padding_mask, attention_bias, ...)

Rewrite: ``MultiHeadAttention(MatMul_q, MatMul_k, MatMul_v, [bq|bk|bv], ...)`` -- the kernel adds the
bias while it splits the heads, so three passes over the projected activations disappear. Self- and
cross-attention alike (the projections may read different inputs), with or without a KV cache
(the bias applies to the new keys/values only, as the Add did).

Check: all three slots are biased 1-D constant adds on a MatMul (a missing bias would need zeros:
left alone), each used only by this node, and the node has no ``bias`` input yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import helper, numpy_helper

from .base import MS, Fusion, Index, Match, Rewrite


def _biased(idx: Index, value: str) -> tuple[Any, str, str] | None:
    add = idx.made_by(value, "Add")
    if add is None:
        return None
    for i, j in ((1, 0), (0, 1)):
        c = idx.const(add.input[i])
        if c is not None and c.ndim == 1 and idx.made_by(add.input[j], "MatMul") is not None:
            return add, add.input[j], add.input[i]
    return None


def _match(idx: Index, mha: Any) -> Match | None:
    if len(mha.input) < 3 or not all(mha.input[:3]) or (len(mha.input) > 3 and mha.input[3]):
        return None
    found = [_biased(idx, v) for v in mha.input[:3]]
    if any(f is None for f in found):
        return None
    return Match(mha, [f[0] for f in found] + [mha], {"adds": found})


def _check(idx: Index, m: Match) -> str | None:
    adds = m.captures["adds"]
    if len({a[0].output[0] for a in adds}) != 3:
        return "one projection feeds two slots"
    for add, _, _ in adds:
        if not idx.only_use(add.output[0], m.anchor):
            return "a biased projection is used elsewhere"
    return None


def _rewrite(idx: Index, m: Match) -> Rewrite:
    mha, adds = m.anchor, m.captures["adds"]
    bias = np.concatenate([idx.const(b) for _, _, b in adds])
    name = idx.fresh(f"{mha.name}/qkv_bias")
    ins = list(mha.input) + [""] * max(0, 4 - len(mha.input))
    ins[:4] = [adds[0][1], adds[1][1], adds[2][1], name]
    node = helper.make_node("MultiHeadAttention", ins, list(mha.output), name=mha.name, domain=MS)
    node.attribute.extend(mha.attribute)
    return Rewrite([node], [numpy_helper.from_array(bias, name)])


FUSION = Fusion("mha_bias", __doc__.splitlines()[0], "MultiHeadAttention", MS, _match, _check, _rewrite)
