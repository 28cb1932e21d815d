"""Three projections of one input + ``MultiHeadAttention`` -> ``com.microsoft.Attention`` with a packed QKV weight.

Pattern (anchor: the ``com.microsoft.MultiHeadAttention`` that the ``ort-mha`` kernel emits)::

    q = Add(MatMul(x, Wq), bq);  k = Add(MatMul(x, Wk), bk);  v = Add(MatMul(x, Wv), bv)   # bias adds optional
    y = MultiHeadAttention(q, k, v, [bias], [key_padding_mask], [attention_bias])

Rewrite: ``Attention(x, [Wq|Wk|Wv], [bq|bk|bv], mask_index, , attention_bias)`` with the same
``num_heads``, ``scale``, ``unidirectional`` and ``mask_filter_value`` -- ORT's own fused path for
BERT-style self-attention (what ``onnxruntime.transformers.optimizer`` produces from the legacy
exporter's graphs): one [D, 3D] GEMM for the projections, then the attention, in one kernel.

Check: self-attention (one ``x``), constant 2-D weights of equal width, projections used only by
this node, no ``bias`` input of its own, no KV cache (past/present: the contrib op's cache layout
differs from the ``past.{i}.key/value`` files nngraph writes), a ``key_padding_mask`` only as key
lengths [B] (the op's 1-D ``mask_index``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import helper, numpy_helper

from .base import MS, Fusion, Index, Match, Rewrite, attr


def _projection(idx: Index, value: str, mha: Any) -> dict[str, Any] | None:
    """{x, w, b, nodes} when ``value`` = MatMul(x, W) [+ b], used only by ``mha``."""
    nodes, bias = [], None
    add = idx.made_by(value, "Add")
    mm_out = value
    if add is not None:
        for i, j in ((1, 0), (0, 1)):
            c = idx.const(add.input[i])
            if c is not None and c.ndim == 1 and idx.made_by(add.input[j], "MatMul") is not None:
                bias, mm_out = add.input[i], add.input[j]
                break
        else:
            return None
        nodes.append(add)
    mm = idx.made_by(mm_out, "MatMul")
    if mm is None or idx.const(mm.input[1]) is None or idx.const(mm.input[1]).ndim != 2:
        return None
    if add is not None and not idx.only_use(mm_out, add):
        return None
    nodes.append(mm)
    return {"x": mm.input[0], "w": mm.input[1], "b": bias, "nodes": nodes, "out": value}


def _match(idx: Index, mha: Any) -> Match | None:
    if len(mha.input) < 3 or not all(mha.input[:3]):
        return None
    projs = [_projection(idx, v, mha) for v in mha.input[:3]]
    if any(p is None for p in projs):
        return None
    covers = [n for p in projs for n in p["nodes"]] + [mha]
    return Match(mha, covers, {"q": projs[0], "k": projs[1], "v": projs[2]})


def _check(idx: Index, m: Match) -> str | None:
    mha, c = m.anchor, m.captures
    ins = list(mha.input) + [""] * (8 - len(mha.input))
    if len({c[k]["x"] for k in "qkv"}) != 1:
        return "cross-attention (the projections read different inputs)"
    if len({c[k]["out"] for k in "qkv"}) != 3:
        return "one projection feeds two slots"
    if ins[3]:
        return "the node already has a packed bias input"
    if ins[6] or ins[7] or len([o for o in mha.output if o]) > 1:
        return "KV cache inputs/outputs (the contrib Attention op caches in another layout)"
    for k in "qkv":
        if not idx.only_use(c[k]["out"], mha):
            return f"the {k} projection is used elsewhere"
    widths = {idx.const(c[k]["w"]).shape[1] for k in "qkv"}
    if len(widths) != 1 or len({idx.const(c[k]["w"]).shape[0] for k in "qkv"}) != 1:
        return f"projections of different shapes {sorted(widths)}"
    if ins[4]:
        shape = idx.shape(ins[4])
        if shape is None or len(shape) != 1:
            return f"key padding is a [B, S] mask (shape {shape}), not key lengths [B]"
    return None


def _rewrite(idx: Index, m: Match) -> Rewrite:
    mha, c = m.anchor, m.captures
    ins = list(mha.input) + [""] * (8 - len(mha.input))
    ws = [idx.const(c[k]["w"]) for k in "qkv"]
    bs = [idx.const(c[k]["b"]) if c[k]["b"] else np.zeros(w.shape[1], w.dtype) for k, w in zip("qkv", ws)]
    w_name, b_name = idx.fresh(f"{mha.name}/qkv_weight"), idx.fresh(f"{mha.name}/qkv_bias")
    inits = [numpy_helper.from_array(np.concatenate(ws, axis=1), w_name),
             numpy_helper.from_array(np.concatenate(bs).astype(ws[0].dtype), b_name)]
    inputs = [c["q"]["x"], w_name, b_name, ins[4], "", ins[5]]
    while not inputs[-1]:
        inputs.pop()
    node = helper.make_node("Attention", inputs, [mha.output[0]], name=idx.fresh(f"{mha.name}/PackedQKV"), domain=MS,
                            num_heads=int(attr(mha, "num_heads")), unidirectional=int(attr(mha, "unidirectional", 0)),
                            mask_filter_value=float(attr(mha, "mask_filter_value", -10000.0)),
                            **({"scale": float(attr(mha, "scale"))} if attr(mha, "scale") is not None else {}))
    return Rewrite([node], inits)


FUSION = Fusion("packed_qkv", __doc__.splitlines()[0], "MultiHeadAttention", MS, _match, _check, _rewrite)
