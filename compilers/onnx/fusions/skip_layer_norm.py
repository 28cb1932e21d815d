"""Residual add + layer norm -> ``com.microsoft.SkipLayerNormalization`` (the projection's bias folded in).

Pattern (anchor: the ``LayerNormalization``)::

    s = Add(x, r)                 # the residual add; r may be Add(MatMul(..), bias) -> bias folded
    y = LayerNormalization(s, gamma, beta, axis=-1, epsilon)

Check: ``x`` and ``r`` have provably the same shape (rank >= 2; SkipLayerNormalization does not
broadcast), the norm runs over the last axis only with 1-D gamma/beta of that size, its mean and
inverse-std outputs are unused, it computes in float (``stash_type`` 1); a folded ``bias`` is a 1-D
constant of the hidden size whose add feeds only the residual add. When the sum ``s`` is used
elsewhere too (the residual stream of a pre-LN block, or a graph output) it becomes the fused op's
fourth output ``input_skip_bias_sum``.

ORT computes ``LN(x + r + bias)`` in one pass over the activations (float32 accumulation); the
result matches the unfused graph to float32 rounding (verified by the export).
"""

from __future__ import annotations

from typing import Any

from onnx import helper

from .base import MS, Fusion, Index, Match, Rewrite, attr, same_shape


def _match(idx: Index, ln: Any) -> Match | None:
    add = idx.made_by(ln.input[0], "Add")
    if add is None or len(ln.input) < 2:
        return None
    x, r = add.input
    covers, caps = [add, ln], {"x": x, "r": r, "bias": None}
    for first, second in ((x, r), (r, x)):   # fold a bias add on either side: Add(MatMul(..), b) or Add(b, MatMul(..))
        inner = idx.made_by(second, "Add")
        if inner is None or not idx.only_use(second, add):
            continue
        for i, j in ((0, 1), (1, 0)):
            b = idx.const(inner.input[i])
            if b is not None and b.ndim == 1 and idx.made_by(inner.input[j], "MatMul") is not None:
                caps.update(x=first, r=inner.input[j], bias=inner.input[i])
                covers.insert(0, inner)
                break
        if caps["bias"] is not None:
            break
    return Match(ln, covers, caps)


def _check(idx: Index, m: Match) -> str | None:
    ln = m.anchor
    xs, rs = idx.shape(m.captures["x"]), idx.shape(m.captures["r"])
    if not same_shape(xs, rs) or len(xs) < 2:
        return f"residual operands of different or unknown shapes ({xs} vs {rs}): SkipLayerNormalization does not broadcast"
    hidden = xs[-1]
    if not isinstance(hidden, int):
        return "the hidden size is not a number"
    if attr(ln, "axis", -1) not in (-1, len(xs) - 1):
        return "normalizes over more than the last axis"
    if int(attr(ln, "stash_type", 1)) != 1:
        return "stash_type is not float"
    if any(o for o in ln.output[1:]):
        return "uses the mean / inverse-std outputs"
    for k in ln.input[1:3]:
        c = idx.const(k) if k else None
        if k and (c is None or c.shape != (hidden,)):
            return f"gamma/beta '{k}' is not a constant of shape [{hidden}]"
    if m.captures["bias"] is not None and idx.const(m.captures["bias"]).shape != (hidden,):
        return "the bias is not of the hidden size"
    if not ln.output[0]:
        return "no output"
    return None


def _rewrite(idx: Index, m: Match) -> Rewrite:
    ln, add = m.anchor, m.covers[-2]
    c = m.captures
    gamma = ln.input[1]
    beta = ln.input[2] if len(ln.input) > 2 else ""
    inputs = [c["x"], c["r"], gamma, beta, c["bias"] or ""]
    while not inputs[-1]:
        inputs.pop()
    sum_used = add.output[0] in idx.outputs or any(u is not ln for u in idx.consumers.get(add.output[0], []))
    outputs = [ln.output[0]] + (["", "", add.output[0]] if sum_used else [])
    node = helper.make_node("SkipLayerNormalization", inputs, outputs, name=idx.fresh(f"{ln.name or 'ln'}/SkipLayerNorm"),
                            domain=MS, epsilon=float(attr(ln, "epsilon", 1e-5)))
    return Rewrite([node])


FUSION = Fusion("skip_layer_norm", __doc__.splitlines()[0], "LayerNormalization", "", _match, _check, _rewrite)
