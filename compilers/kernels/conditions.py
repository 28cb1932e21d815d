"""Shared condition checks of the kernels: a profile entry (compilers/targets/profiles.json) -> reasons, costs.

Pure data: the facts (:class:`nngraph.compilers.passes.facts.AttentionFacts`) and target are read by attribute,
so kernels import neither the planner nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nngraph.compilers.passes.facts import AttentionFacts
    from nngraph.compilers.targets import Target


def unmet(entry: dict[str, Any], facts: AttentionFacts, target: Target, mode: str, variant: str,
          what: str) -> list[str]:
    """Why a kernel/backend entry of the profile does not fit: [] if it does. ``variant``: causal|none|mask|bias."""
    out: list[str] = []
    dtype = target.compute_dtype(facts.dtype)
    if entry.get("feature") and not target.has(entry["feature"]):
        out.append(f"needs torch feature '{entry['feature']}' (torch {target.torch_version} lacks it)")
    cap = entry.get("min_capability")
    if cap and target.device == "cuda" and (target.capability or (0, 0)) < tuple(cap):
        have = target.capability or (0, 0)
        out.append(f"needs compute capability sm{cap[0]}{cap[1]}+, target is sm{have[0]}{have[1]}")
    if entry.get("dtypes") and dtype not in entry["dtypes"]:
        out.append(f"computes in {'/'.join(entry['dtypes'])}, not {dtype}")
    hd = facts.head_dim
    if hd is not None and entry.get("max_head_dim") and hd > entry["max_head_dim"]:
        out.append(f"head_dim {hd} > {entry['max_head_dim']}")
    if hd is not None and entry.get("head_dim_multiple") and hd % entry["head_dim_multiple"]:
        out.append(f"head_dim {hd} is not a multiple of {entry['head_dim_multiple']}")
    need = {"causal": "causal", "mask": "mask", "bias": "bias"}.get(variant)
    if need and entry.get(need) is False:
        out.append({"causal": "no is_causal", "mask": "takes no mask tensor",
                    "bias": "takes no additive bias"}[need] + f" ({_variant_text(facts, variant)})")
    if mode == "training":
        if entry.get("backward") is False:
            out.append(f"no backward on {target.device} (training needs gradients)")
        if facts.dropout > 0 and entry.get("dropout") is False:
            out.append(f"no attention dropout (dropout {facts.dropout} in training)")
        if variant == "bias" and learnable_bias(facts) and entry.get("bias_grad") is False:
            out.append(f"no gradient for a learnable bias ({facts.position or 'bias input'})")
    return [f"{what}: {r}" if what else r for r in out]


def pointwise_unmet(entry: dict[str, Any], facts: AttentionFacts, target: Target, mode: str,
                    suffix: str = "") -> str | None:
    """Why a tiled kernel (evaluating the mask predicate on the pairs it computes) does not fit: a table mask
    (BigBird's random rows have no pointwise form) or the profile entry's conditions; None if it fits."""
    from nngraph.attention.analysis import table_leaves

    tables = table_leaves(facts.mask)
    if tables:
        return f"mask {tables[0].name} is a table over the whole sequence (no pointwise form){suffix}"
    problems = unmet(entry, facts, target, mode, "mask", "")
    return "; ".join(problems) if problems else None


def row_bias_unserved(facts: AttentionFacts, how: str) -> str | None:
    """Why a kernel that derives the score bias from query/key indices alone (``how``) cannot serve per-row
    position ids (a ``positions`` input with ALiBi / T5 / Shaw / a score formula), else None."""
    if facts.row_bias:
        return (f"position {facts.position} reads per-row position ids (the positions input), but {how} "
                "derives the bias from query/key indices only")
    return None


def torch_kernel_missing(target: Target, kernel: str) -> str | None:
    """Why a torch kernel cannot run on ``target`` at all (an ONNX Runtime target, or a profile without it)."""
    if target.runtime != "torch":
        return f"target {target.name} runs ONNX Runtime: torch kernels are not used"
    if target.kernel(kernel) is None:
        return f"profile {target.profile} has no {kernel}"
    return None


def profile_entry(target: Target, kernel: str) -> tuple[dict[str, Any], str | None]:
    """(the target profile's entry for a torch kernel, None) or ({}, why the kernel cannot run there at all)."""
    missing = torch_kernel_missing(target, kernel)
    return ({}, missing) if missing else (target.kernel(kernel) or {}, None)


def learnable_bias(facts: AttentionFacts) -> bool:
    """The additive score term has parameters (T5 table, Shaw keys) or is computed by nodes that may hold some
    (a fused node's bias from a graph input is data: no gradient expected)."""
    return facts.bias_learnable


def variant_of(facts: AttentionFacts) -> str:
    """causal | none | mask | bias: how the node's mask and position reach a fused kernel."""
    if facts.has_bias:
        return "bias"
    return facts.mask_kind


def _variant_text(facts: AttentionFacts, variant: str) -> str:
    if variant == "bias":
        return f"bias from {facts.position if facts.position_kind == 'bias' else 'the bias input'}" + (
            f" + mask {facts.mask_text}" if facts.mask_kind != "none" else "")
    return f"mask {facts.mask_text}"


def dense_bytes(facts: AttentionFacts, kv_len: int, per_head: float = 0.0, shared: float = 0.0) -> float:
    """Bytes of ``per_head`` bytes per (head, query, key) plus ``shared`` per (query, key), batch 1."""
    q = facts.q_len if isinstance(facts.q_len, int) and facts.cross else kv_len
    return (per_head * (facts.heads or 1) + shared) * q * kv_len


def cost_ms(entry: dict[str, Any] | None, units: float, scale: float = 1.0) -> float:
    """``ns_per_unit * units * scale / 1e6 + overhead_ms`` from a profile cost entry (inf if missing)."""
    if not entry:
        return float("inf")
    return entry["ns_per_unit"] * units * scale / 1e6 + entry.get("overhead_ms", 0.0)
