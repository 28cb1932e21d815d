"""``--explain``: for every attention node, the kernel chosen, why, and why each other candidate lost.

:func:`explain` runs the fusion pass (so attention written out of primitives is listed as its
fused ``sdpa`` node) and the lowering decisions for a target and mode, and returns plain records
(:func:`explain_data`, JSON-able) or the text table (:func:`format_explain`). ``nngraph compile
--target T --explain`` prints the text; the ONNX export's ``--explain`` can call the same
functions with an ``ort-*`` target.
"""

from __future__ import annotations

from typing import Any

from nngraph.ir import Graph

from ..targets import Target, get_target
from .fusion import fuse
from .lowering import SHOW_LEN, Candidate, Decision, decisions, tiers_text


def explain(graph: Graph, target: "Target | str" = "auto", mode: str = "inference",
            kv_len: int | None = None, fused: bool = True, dims: dict[str, int] | None = None) -> list[Decision]:
    """Decisions for every attention node (after fusion when ``fused``)."""
    if fused:
        graph = fuse(graph).graph
    return decisions(graph, get_target(target), mode, kv_len, dims)


def _ms(x: float) -> str:
    return f"{x:.3g} ms" if x < 1000 else f"{x / 1000:.3g} s"


def _show_len(d: Decision) -> int:
    return d.lengths[0] if len(d.lengths) == 1 else SHOW_LEN


def _verdict(d: Decision, c: Candidate) -> str:
    if c.reason is not None:
        return f"rejected: {c.reason}"
    used = [t for t in d.tiers if t["kernel"] == c.kernel]
    L = _show_len(d)
    est = f"est. {_ms(c.costs[L])} at kv_len {L}" if L in c.costs else ""
    extra = []
    if c.kernel == "flex" and c.config is not None:
        prof = d.target.kernel("flex") or {}
        extra.append(f"compile ~{prof.get('compile_s', 0):g} s amortized over {d.target.expected_calls(d.mode)} calls")
        if not c.config.get("backward", True):
            extra.append("forward only")
    if c.kernel == "sdpa" and c.config is not None:
        extra.append(f"{c.config['variant']}, backends {'/'.join(c.config.get('backend_names', []))}")
    if c.memory.get(L):
        budget = d.target.data.get("dense_budget_mib")
        over = budget is not None and c.memory[L] > budget * 2 ** 20
        extra.append(f"materializes ~{c.memory[L] / 2 ** 20:.0f} MiB at kv_len {L}" +
                     (f" (> {budget} MiB budget: last resort)" if over else ""))
    detail = "; ".join(x for x in [est] + extra if x)
    if used:
        if c.kernel == "reference" and d.tiers[0]["kernel"] != "reference":
            return f"fallback (backward, any call the others cannot serve){': ' + detail if detail else ''}"
        where = ", ".join("calls that need gradients" if t.get("role") == "backward" else _range(d.tiers, t)
                          for t in used)
        return f"chosen ({where}){': ' + detail if detail else ''}"
    if c.costs:
        best = min((x for x in d.candidates if x.reason is None and x.costs), key=lambda x: x.score.get(L, 1e300))
        return f"applies but slower at every length{': ' + detail if detail else ''} vs {best.kernel} {_ms(best.costs[L])}"
    return f"applies, not preferred{': ' + detail if detail else ''}"


def _range(tiers: list[dict[str, Any]], tier: dict[str, Any]) -> str:
    """The key lengths a tier serves: ``kv_len >= 4096``, ``kv_len < 4096``, ``512 <= kv_len < 4096``."""
    tiers = [t for t in tiers if t.get("role") != "backward"]
    i = next(i for i, t in enumerate(tiers) if t is tier)
    above = tiers[i - 1]["min_kv"] if i else None
    lo = tier.get("min_kv", 0)
    if lo and above:
        return f"{lo} <= kv_len < {above}"
    if lo:
        return f"kv_len >= {lo}"
    return f"kv_len < {above}" if above else "all lengths"


def _why(d: Decision) -> str:
    ok = [c for c in d.candidates if c.reason is None and c.costs]
    if not ok:
        first = d.tiers[0]["kernel"] if d.tiers else "reference"
        return "first applicable kernel in the back end's order" if first != "reference" else "no other kernel applies"
    parts = []
    tiers = [t for t in d.tiers if (t["kernel"] != "reference" or t is d.tiers[0]) and t.get("role") != "backward"]
    for i, t in enumerate(tiers):
        above = tiers[i - 1]["min_kv"] if i else None
        L = t["min_kv"] or (min(_show_len(d), above // 2) if above else _show_len(d))
        L = min(d.lengths, key=lambda x: abs(x - L))
        ranked = sorted(ok, key=lambda c: c.score[L])
        text = ", ".join(f"{c.kernel} {_ms(c.costs[L])}" + (" (over the memory budget)" if c.score[L] != c.costs[L] else "")
                         for c in ranked)
        parts.append(f"{t['kernel']}: est. at kv_len {L}: {text}")
    lead = "; ".join(parts)
    if d.mode == "training":
        lead += " (training: kernels need a backward)"
    return lead


def explain_data(decs: list[Decision]) -> list[dict[str, Any]]:
    """JSON-able records: node, op, mask, position, kernel, tiers, why, candidates [{kernel, verdict}]."""
    out = []
    for d in decs:
        out.append({
            "node": d.node, "op": d.op, "mask": d.facts.mask_text, "position": d.facts.position,
            "kernel": d.kernel, "plan": tiers_text(d.tiers), "tiers": d.tiers, "why": _why(d),
            "candidates": [{"kernel": c.kernel, "rule": c.rule, "applies": c.reason is None,
                            "verdict": _verdict(d, c)} for c in d.candidates],
        })
    return out


def format_explain(decs: list[Decision], target: "Target | str", mode: str = "inference",
                   kv_len: int | None = None, dims: dict[str, int] | None = None) -> str:
    """The text table ``nngraph compile --explain`` prints."""
    target = get_target(target)
    given = [f"kv_len {kv_len}"] if kv_len else [f"{k}={v}" for k, v in (dims or {}).items()]
    length = ("lengths " + ", ".join(given) + "; " if given else "") + \
        "symbolic lengths get a kernel per length range (costs shown at 2048)"
    lines = [f"target: {target.describe()}", f"mode: {mode}; {length}"]
    if not decs:
        lines.append("no attention nodes")
        return "\n".join(lines)
    rows = [(d.node, d.op, tiers_text(d.tiers), _why(d)) for d in decs]
    heads = ("node", "op", "kernel", "why")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads[:3])]
    lines.append("")
    lines.append("  ".join(h.ljust(w) for h, w in zip(heads, widths + [0])).rstrip())
    lines.append("  ".join("-" * w for w in widths + [len("why")]))
    for d, row in zip(decs, rows):
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths + [0])).rstrip())
        info = f"mask {d.facts.mask_text}, position {d.facts.position}, dtype {target.compute_dtype(d.facts.dtype)}"
        lines.append(f"    {info}")
        rows_c: list[tuple[str, str]] = []
        for c in d.candidates:  # candidates with the same verdict share a line (e.g. every ONNX kernel on a torch target)
            verdict = _verdict(d, c)
            if rows_c and rows_c[-1][1] == verdict:
                rows_c[-1] = (rows_c[-1][0] + "/" + c.kernel, verdict)
            else:
                rows_c.append((c.kernel, verdict))
        width = max(len(k) for k, _ in rows_c)
        lines.extend(f"    {k:<{width}}  {v}" for k, v in rows_c)
    return "\n".join(lines)


__all__ = ["explain", "explain_data", "format_explain"]
