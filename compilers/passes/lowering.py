"""The lowering pass: every attention node -> a plan of kernels chosen for the target and mode.

For each ``attention`` node (and each fused ``sdpa`` node, see :mod:`.fusion`) every lowering
rule (:mod:`.rules`, one per kernel) is checked: its check returns why the kernel does not apply
(device, dtype, capability, head_dim, mask/bias support, backward in training, dropout, ...,
all read from the target's profile data). Among the kernels that apply, the one with the lowest
estimated cost wins — per key length, because a kernel's advantage depends on it:

* ``reference`` (the decomposed math) always applies and is the fallback;
* ``sdpa``: fused, memory-linear with ``is_causal`` or no mask; a materialized mask or bias only
  where nothing better applies;
* ``flex`` (compiled FlexAttention) skips empty blocks of a block-sparse mask but pays a one-time
  compile (``compile_s`` in the profile, amortized over ``expected_calls``) and, on the CPU, has
  no backward: it is never chosen for CPU training, and below the length where its block skipping
  pays for itself the plan keeps SDPA.

A plan is a list of *tiers* ``[{kernel, min_kv, ...config}, ...]`` (highest ``min_kv`` first,
the reference last): the lowered module picks, per call, the first tier whose ``min_kv`` <= the
actual key length and which supports what the call needs (a backward pass when gradients are on,
dropout in training). With a concrete sequence length the plan has one tier (plus the reference);
with a symbolic one, tiers cover the lengths in :data:`GRID` — so a lowered model is never slower
than the reference at any length, as far as the cost model (calibrated by bench/attention.py)
knows.

The rewrite turns ``attention`` into ``attention_lowered`` (same params plus ``kernel``: the plan;
the same parameter names, so the same weights load) and ``sdpa`` keeps its op with a ``kernel``
param. Targets whose runtime is ONNX Runtime are not rewritten (the ONNX exporter reads
:func:`decide` itself); their decision is shown by ``--explain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from nngraph.ir import Graph, Node

from ..kernels import kernel_names, tiers_text
from ..kernels.conditions import cost_ms, learnable_bias, torch_kernel_missing, unmet, variant_of
from ..targets import MODES, Target, get_target
from .facts import AttentionFacts, facts_of
from .rewrite import Change, Edit, Match, PassResult, Rule, apply_edits
from .rules import rules

#: key lengths at which costs are compared when the length is symbolic
GRID = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
#: the length shown in explanations for symbolic sequences
SHOW_LEN = 2048
#: cost factor for a kernel that would materialize more than the profile's ``dense_budget_mib``
MEMORY_PENALTY = 100.0


@dataclass
class LowerCtx:
    """What a lowering rule's check/rewrite/cost sees."""

    target: Target
    mode: str
    facts: AttentionFacts


@dataclass
class Candidate:
    """One kernel rule's verdict on a node."""

    rule: str
    kernel: str
    reason: str | None                    # None: applies
    config: dict[str, Any] | None = None
    costs: dict[int, float] = field(default_factory=dict)   # kv_len -> estimated ms
    memory: dict[int, float] = field(default_factory=dict)  # kv_len -> estimated bytes materialized
    score: dict[int, float] = field(default_factory=dict)   # kv_len -> what ranks it: ms, x100 over the memory budget


@dataclass
class Decision:
    """The lowering of one node: facts, every candidate's verdict, and the chosen tiers."""

    node: str
    op: str
    facts: AttentionFacts
    target: Target
    mode: str
    candidates: list[Candidate]
    tiers: list[dict[str, Any]]
    lengths: tuple[int, ...]

    @property
    def kernel(self) -> str:
        """The kernel of the first tier (the one used at the longest lengths)."""
        return self.tiers[0]["kernel"]

    def plan(self) -> dict[str, Any]:
        """The plan stored in the lowered node (plain data)."""
        return {"target": self.target.name, "mode": self.mode, "tiers": [dict(t) for t in self.tiers]}


# ----- decisions --------------------------------------------------------------------
def _kernel_rules() -> list[Rule]:
    found: list[Rule] = []
    for rule in rules("lower"):
        members = rule.expand() if rule.expand is not None else []
        found.extend(members or [rule])
    order = kernel_names()  # the registry's display and tie-break order; ONNX kernels after, in the exporter's order
    return sorted(found, key=lambda r: order.index(r.kernel) if r.kernel in order else len(order))  # stable


def decide(graph: Graph, node: Node, target: "Target | str", mode: str = "inference",
           kv_len: int | None = None, dims: dict[str, int] | None = None) -> Decision | None:
    """The lowering decision for one node (None if it is not an attention node).

    ``kv_len`` fixes the key (and self-attention query) length; ``dims`` gives sizes of symbolic
    dims (``--dim seq=4096``); otherwise a symbolic length gets tiers over :data:`GRID`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    target = get_target(target)
    facts = facts_of(graph, node)
    if facts is None:
        return None
    if dims:
        facts = replace(facts, q_len=dims.get(facts.q_len, facts.q_len) if isinstance(facts.q_len, str) else facts.q_len,
                        kv_len=dims.get(facts.kv_len, facts.kv_len) if isinstance(facts.kv_len, str) else facts.kv_len)
    if kv_len is not None:
        facts = replace(facts, kv_len=kv_len, q_len=kv_len if not facts.cross else facts.q_len)
    lengths = (facts.kv_len,) if isinstance(facts.kv_len, int) else GRID
    ctx = LowerCtx(target, mode, facts)
    cands: list[Candidate] = []
    for rule in _kernel_rules():
        if rule.ops and node.op not in rule.ops:
            cands.append(Candidate(rule.name, rule.kernel or rule.name, f"lowers {'/'.join(rule.ops)} nodes only"))
            continue
        m = Match(node.name, (node.name,), {"facts": facts})
        reason = rule.check(graph, m, ctx)
        if reason is not None:
            cands.append(Candidate(rule.name, rule.kernel or rule.name, reason))
            continue
        cfg = rule.rewrite(graph, m, ctx)
        # the cost model covers torch kernels; ONNX Runtime candidates are taken in the exporter's order
        costs = {L: rule.cost(facts, target, mode, L, cfg) for L in lengths} \
            if rule.cost and target.runtime == "torch" else {}
        memory = {L: rule.memory(facts, L, cfg, mode) for L in lengths} if rule.memory and costs else {}
        budget = float(target.data.get("dense_budget_mib", float("inf"))) * 2 ** 20
        # over the profile's budget for materialized T×S tensors: a last resort only
        score = {L: c * (MEMORY_PENALTY if memory.get(L, 0.0) > budget else 1.0) for L, c in costs.items()}
        cands.append(Candidate(rule.name, rule.kernel or rule.name, None, cfg, costs, memory, score))
    return Decision(node.name, node.op, facts, target, mode, cands, _tiers(cands, lengths), lengths)


def _tiers(cands: list[Candidate], lengths: tuple[int, ...]) -> list[dict[str, Any]]:
    ok = [c for c in cands if c.reason is None]
    ref = next((c for c in ok if c.kernel == "reference"), None)
    if not any(c.costs for c in ok):  # e.g. ONNX Runtime targets: first applicable in order
        first = next((c for c in ok if c.kernel != "reference"), ref)
        chosen = [dict(first.config or {"kernel": first.kernel}, min_kv=0)] if first else []
        if ref is not None and first is not ref:
            chosen.append(dict(ref.config or {"kernel": "reference"}, min_kv=0))
        return chosen
    winners = [(L, min((c for c in ok if c.score), key=lambda c: c.score[L])) for L in lengths]
    segments: list[tuple[int, Candidate]] = []
    for L, c in winners:
        if not segments or segments[-1][1] is not c:
            segments.append((L, c))
    tiers = []
    for i, (L, c) in enumerate(reversed(segments)):
        lowest = i == len(segments) - 1
        tiers.append(dict(c.config or {"kernel": c.kernel}, min_kv=0 if lowest else L))
    # a call with gradients skips forward-only tiers: give each such tier a backward-capable one for its lengths
    grad = [c for c in ok if c.score and (c.config or {}).get("backward", True)]
    out: list[dict[str, Any]] = []
    for i, t in enumerate(tiers):
        out.append(t)
        if t.get("backward", True) or not grad:
            continue
        at = min((L for L in lengths if L >= t["min_kv"]), default=lengths[-1])
        best = min(grad, key=lambda c: c.score[at])
        following = tiers[i + 1] if i + 1 < len(tiers) else None
        if best is ref or (following is not None and following["kernel"] == best.kernel and following["min_kv"] <= t["min_kv"]):
            continue
        out.append(dict(best.config or {"kernel": best.kernel}, min_kv=t["min_kv"], role="backward"))
    tiers = out
    if tiers[-1]["kernel"] != "reference" and ref is not None:
        tiers.append(dict(ref.config or {"kernel": "reference"}, min_kv=0))
    return tiers


def decisions(graph: Graph, target: "Target | str", mode: str = "inference",
              kv_len: int | None = None, dims: dict[str, int] | None = None) -> list[Decision]:
    """A decision for every attention node of ``graph`` (see :func:`decide`)."""
    out = []
    for node in graph.nodes.values():
        d = decide(graph, node, target, mode, kv_len, dims)
        if d is not None:
            out.append(d)
    return out


# ----- the pass -----------------------------------------------------------------------
def lowered_node(node: Node, decision: Decision) -> Node:
    """The node with its plan: ``attention`` -> ``attention_lowered``; ``sdpa`` keeps its op."""
    op = "attention_lowered" if node.op in ("attention", "attention_lowered") else node.op
    return replace(node, op=op, params={**node.params, "kernel": decision.plan()})


def lower(graph: Graph, target: "Target | str" = "auto", mode: str = "inference",
          kv_len: int | None = None, dims: dict[str, int] | None = None) -> PassResult:
    """Lower every attention node for ``target`` and ``mode``; returns the new graph and the changes.

    ONNX Runtime targets leave the graph unchanged (their kernels are chosen at export)."""
    target = get_target(target)
    result = PassResult(graph)
    if target.runtime != "torch":
        result.skipped = [(d.node, "lower", f"target {target.name} runs ONNX Runtime: chosen at export")
                          for d in decisions(graph, target, mode, kv_len, dims)]
        return result
    edits, changes = [], []
    for d in decisions(graph, target, mode, kv_len, dims):
        node = graph.nodes[d.node]
        edits.append(Edit({d.node: lowered_node(node, d)}, tiers_text(d.tiers)))
        changes.append(Change("lower", f"lower_{d.kernel}", d.node, tiers_text(d.tiers)))
    if edits:
        result = PassResult(apply_edits(graph, edits), changes)
    return result


__all__ = ["Candidate", "Decision", "GRID", "LowerCtx", "cost_ms", "decide", "decisions", "learnable_bias", "lower",
           "lowered_node", "tiers_text", "torch_kernel_missing", "unmet", "variant_of"]
