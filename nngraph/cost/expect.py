"""``expect:`` in a spec: published numbers checked at validate time, each error at its own line.

    expect:
      params: 124439808            # exact: the graph's parameter count (shared weights once)
      flops_per_token: 2.66e8      # forward FLOPs / tokens at the sizes in `at`, within `tolerance`
      max_activation_mb: 800       # activations kept for backward (training) at `at`, MiB, an upper bound
      at: {seq: 1024}              # sizes for the two above (batch defaults to 1, other dims to 128)
      tolerance: 0.01              # relative, for flops_per_token (default 1%)

A model's published parameter count becomes a checked line of its spec, not a number a test alone knows.
Expectations describe the spec as written: with ``--set`` overrides (another model) they are not checked.
"""

from __future__ import annotations

from typing import Any

from ..errors import Diagnostics, SourcePos
from ..ir import Graph
from ..yamlsrc import pos_in

#: the keys ``expect:`` takes (the JSON Schema is generated from this)
EXPECT_KEYS: dict[str, dict[str, Any]] = {
    "params": {"type": "integer", "minimum": 0, "description": "exact parameter count (shared weights counted once)"},
    "flops_per_token": {"type": "number", "exclusiveMinimum": 0,
                        "description": "forward FLOPs per token at the sizes in `at` (within `tolerance`)"},
    "max_activation_mb": {"type": "number", "exclusiveMinimum": 0,
                          "description": "upper bound on the activations kept for backward (training), MiB, at `at`"},
    "at": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1},
           "description": "sizes of symbolic dims for the FLOP and memory checks (batch: 1, others: 128 by default)"},
    "tolerance": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                  "description": "relative tolerance of flops_per_token (default 0.01)"},
}


def expect_schema() -> dict[str, Any]:
    """The JSON Schema of ``expect:``."""
    return {"type": "object", "additionalProperties": False, "properties": EXPECT_KEYS,
            "description": "published numbers checked at validate (params exact; FLOPs per token; activation MiB)"}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_expect(data: dict, graph: Graph, diag: Diagnostics, top: SourcePos) -> None:
    """Report every ``expect:`` line the graph does not meet, at that line."""
    exp = data.get("expect")
    if exp is None:
        return
    where = pos_in(data, "expect", top)
    if not isinstance(exp, dict):
        diag.error(where, "'expect' must be a mapping", "expect: {params: 124439808}")
        return
    for key, value in exp.items():
        if key not in EXPECT_KEYS:
            diag.error(pos_in(exp, key, where), f"unknown expect key '{key}'", f"use one of: {', '.join(EXPECT_KEYS)}")
        elif key != "at" and not _number(value):
            diag.error(pos_in(exp, key, where), f"expect.{key} must be a number, got {value!r}")
    if any(d.severity == "error" for d in diag):
        return
    if "params" in exp and exp["params"] != graph.total_params:
        diag.error(pos_in(exp, "params", where), f"expected {exp['params']:,} parameters, the graph has "
                   f"{graph.total_params:,} (difference {graph.total_params - exp['params']:+,})",
                   "fix the spec, or the expectation if the published count was wrong")
    if "flops_per_token" in exp or "max_activation_mb" in exp:
        _check_cost(exp, graph, diag, where)


def _check_cost(exp: dict, graph: Graph, diag: Diagnostics, where: SourcePos) -> None:
    from .report import cost_report, sizes_for

    sizes, _ = sizes_for(graph, dict(exp.get("at") or {}), None)
    tot = cost_report(graph, sizes, "training")["totals"]
    at = ", ".join(f"{k}={v}" for k, v in sizes.items())
    want = exp.get("flops_per_token")
    if want is not None:
        got, tol = tot["flops_per_token"], float(exp.get("tolerance", 0.01))
        if got is None:
            diag.error(pos_in(exp, "flops_per_token", where), "the graph has no [batch, seq] integer token input",
                       "remove flops_per_token")
        elif abs(got - want) > tol * want:
            diag.error(pos_in(exp, "flops_per_token", where), f"expected {want:.4g} FLOPs per token at {at}, "
                       f"the graph does {got:.4g} ({100 * (got - want) / want:+.2f}%, tolerance {100 * tol:g}%)")
    limit = exp.get("max_activation_mb")
    if limit is not None and tot["activation_bytes"] > limit * 2 ** 20:
        diag.error(pos_in(exp, "max_activation_mb", where), f"activations kept for backward at {at} are "
                   f"{tot['activation_bytes'] / 2 ** 20:,.1f} MiB, over the expected {limit:g} MiB")
