"""Bias add + GELU -> ``com.microsoft.BiasGelu`` (exact) / ``com.microsoft.FastGelu`` (tanh approximation).

Pattern (anchor: the opset-20 ``Gelu``)::

    h = Add(MatMul(..), bias)     # bias: 1-D constant of the last dim (either operand order)
    y = Gelu(h, approximate="none" | "tanh")

Check: the bias is a 1-D constant of the activation's last dim and ``h`` feeds only the ``Gelu``.
ORT's CPU kernels add the bias and apply the activation in one pass (``BiasGelu(A, B)``,
``FastGelu(X, bias)``); results match the unfused graph to float32 rounding (verified by the export).
"""

from __future__ import annotations

from typing import Any

from onnx import helper

from .base import MS, Fusion, Index, Match, Rewrite, attr


def _match(idx: Index, gelu: Any) -> Match | None:
    add = idx.made_by(gelu.input[0], "Add")
    if add is None:
        return None
    for i, j in ((1, 0), (0, 1)):
        b = idx.const(add.input[i])
        if b is not None and b.ndim == 1 and idx.const(add.input[j]) is None:
            return Match(gelu, [add, gelu], {"x": add.input[j], "bias": add.input[i], "size": int(b.shape[0])})
    return None


def _check(idx: Index, m: Match) -> str | None:
    add = m.covers[0]
    if not idx.only_use(add.output[0], m.anchor):
        return "the biased value is used elsewhere"
    shape = idx.shape(m.captures["x"])
    if shape is None or not shape or shape[-1] != m.captures["size"]:
        return f"the bias does not run along the last axis (shape {shape})"
    if attr(m.anchor, "approximate", "none") not in ("none", "tanh"):
        return "unknown GELU approximation"
    return None


def _rewrite(idx: Index, m: Match) -> Rewrite:
    gelu = m.anchor
    tanh = attr(gelu, "approximate", "none") == "tanh"
    op = "FastGelu" if tanh else "BiasGelu"
    node = helper.make_node(op, [m.captures["x"], m.captures["bias"]], [gelu.output[0]],
                            name=idx.fresh(f"{gelu.name or 'gelu'}/{op}"), domain=MS)
    return Rewrite([node])


def _min_opset(graph: Any) -> tuple[int, str] | None:
    """Opset 20 when ``graph`` computes a GELU: ``Gelu``, the anchor, is an opset-20 op; below 20 torch writes GELU
    as Erf (or Tanh) arithmetic, which this fusion does not match (ONNX Runtime's own optimizer still fuses it)."""
    if any(n.op == "gelu" or n.params.get("activation") == "gelu" for n in graph.nodes.values()):
        return 20, "its anchor, the Gelu op, is opset 20"
    return None


FUSION = Fusion("bias_gelu", __doc__.splitlines()[0], "Gelu", "", _match, _check, _rewrite, _min_opset)
