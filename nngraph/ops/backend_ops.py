"""Back-end ops: the nodes that graph passes create (compilers/passes), declared here so the IR stays closed.

A spec never writes these (they are not in :func:`nngraph.registry.registry`, the JSON Schema or the
spec reference); :meth:`nngraph.ir.Graph.lint` checks them after every pass like any other op:

* ``sdpa`` — the fusion pass (compilers/passes/rules/fuse_attention.py) folds attention written out of
  matmul/softmax into one core node on head-split q, k, v (+ an additive bias);
* ``attention_lowered`` — the lowering pass (compilers/passes/lowering.py) turns ``attention`` into it:
  the same params plus ``kernel`` (the plan), the same parameter names, so the same weights load.
"""

from __future__ import annotations

from typing import Any

from ..registry import InferCtx, Param, p_bool, p_float, op
from ..types import TensorType
from .attention import attention as _attention


def _check_plan(value: Any) -> list[tuple[str, str]]:
    """A lowering plan: ``{target, mode, tiers: [{kernel, min_kv, ...}, ...]}`` (see compilers/passes/lowering.py)."""
    if not isinstance(value, dict):
        return [("", f"expected a lowering plan (a mapping), got {type(value).__name__}")]
    tiers = value.get("tiers")
    if not isinstance(tiers, list) or not tiers:
        return [("tiers", "expected a non-empty list of kernel tiers")]
    for i, tier in enumerate(tiers):
        if not isinstance(tier, dict) or not isinstance(tier.get("kernel"), str):
            return [(f"tiers.{i}", f"expected a mapping with a kernel name, got {tier!r}")]
    return []


_PLAN_SCHEMA = {"type": "object", "required": ["tiers"],
                "properties": {"tiers": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["kernel"]}}}}


def plan_param() -> Param:
    """The ``kernel`` param the lowering pass adds: the chosen kernel tiers (None: not lowered yet)."""
    return Param("custom", "lowering plan: target, mode and kernel tiers (highest min_kv first)", None,
                 schema=_PLAN_SCHEMA, check=_check_plan)


@op("sdpa", family="backend", inputs=("q", "k", "v", "bias?"), params={
    "scale": p_float("score scale α (the written-out matmul and scale factors multiplied)", None),
    "dropout": p_float("dropout on the attention probabilities", 0.0, min=0.0, max=1.0),
    "causal": p_bool("mask keys after the query (is_causal)", False),
    "kernel": plan_param(),
}, internal=True)
def sdpa(ctx: InferCtx) -> TensorType:
    """Fused scaled dot-product attention on head-split tensors (made by the fusion pass, never written in YAML).

    out = softmax(q kᵀ · scale + bias) v with q [..., T, d], k [..., S, d], v [..., S, d_v] → out [..., T, d_v].
    """
    q, v = ctx.inputs["q"], ctx.inputs["v"]
    assert q is not None and v is not None
    return q.with_shape(tuple(q.shape[:-1]) + (v.shape[-1],))


@op("attention_lowered", family="backend", inputs=_attention.inputs,
    params={**_attention.params, "kernel": plan_param()}, count=_attention.count_params, internal=True)
def attention_lowered(ctx: InferCtx) -> TensorType:
    """``attention`` with its kernel plan (made by the lowering pass, never written in YAML): same shapes and weights."""
    return _attention.infer(ctx)  # type: ignore[return-value]
