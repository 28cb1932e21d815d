"""Kernel: compiled FlexAttention with a block mask — for block-sparse masks at long lengths.

Pattern: an ``attention`` node on a torch target (a fused ``sdpa`` node's bias tensor has no block
structure to skip). The kernel (compilers/torch/ops/attention_kernels_flex.py) builds ``mask_mod``
from the node's mask predicate (the same function the reference evaluates), ``score_mod`` from
ALiBi / T5 buckets / Shaw keys, and a ``BlockMask`` so empty 128×128 tiles are skipped (sliding
window, global tokens, documents, strided, prefix-LM, causal).

Check: the profile has ``flex`` and the torch feature exists; the profile's conditions hold (dtype,
capability; in training: a backward — none on the CPU — and no attention dropout, which flex does
not apply); no Shaw value term; no score bias from per-row position ids (score_mod sees indices only); a mask that may leave a query row with no visible key needs the
kernel's logsumexp to patch that row like the reference (``lse``; compiled flex on the CPU has none). Cost: ``flex.cost`` scaled by the mask's block density at that
length, plus the one-time compile (``compile_s``) amortized over the profile's ``expected_calls``
for the mode — so flex wins only at lengths where skipping blocks pays for the compile — plus, for
masks that read graph inputs (key padding, document ids), rebuilding the BlockMask every call.
Queries shorter than one block (decoding steps) go to the next tier (``min_q``): nothing to skip.
"""

from __future__ import annotations

from .density import block_density
from .conditions import cost_ms, profile_entry, row_bias_unserved, unmet, variant_of
from . import ATTENTION_OPS, KernelDef, register_kernel



def _check(ctx):
    facts, target, mode = ctx.facts, ctx.target, ctx.mode
    entry, missing = profile_entry(target, "flex")
    if missing:
        return missing
    if facts.value_term:
        return f"{facts.value_term}, which needs the attention weights flex never materializes"
    if why := row_bias_unserved(facts, "its score_mod"):
        return why
    problems = unmet(entry, facts, target, mode, variant_of(facts), "")
    if facts.fix_empty_rows and entry.get("lse") is False:
        problems.append(f"mask {facts.mask_text} may leave a query with no visible key (the reference attends "
                        f"uniformly there), and compiled flex on {target.device} cannot return the logsumexp that "
                        "finds such rows")
    return "; ".join(problems) if problems else None


def _config(ctx):
    facts, entry = ctx.facts, ctx.target.kernel("flex")
    return {"kernel": "flex", "compiled": True, "block": entry.get("block", 128), "min_q": entry.get("block", 128),
            "gqa": bool(entry.get("gqa")) and (facts.kv_heads or 1) < (facts.heads or 1),
            "fix_empty_rows": facts.fix_empty_rows,
            "backward": bool(entry.get("backward", True))}


def _cost(facts, target, mode, kv_len, cfg):
    entry = target.kernel("flex") or {}
    density = block_density(facts, kv_len, cfg.get("block", 128))
    compile_ms = 1000.0 * entry.get("compile_s", 0.0) / max(1, target.expected_calls(mode))
    rebuild = 0.0
    if facts.data_inputs:  # the BlockMask depends on graph inputs: built again every call
        q_len = facts.q_len if isinstance(facts.q_len, int) and facts.cross else kv_len
        rebuild = entry.get("cost", {}).get("block_mask_ns_per_pair", 0.0) * q_len * kv_len / 1e6
    return cost_ms(entry.get("cost"), facts.units(kv_len), density) + compile_ms + rebuild


def _memory(facts, kv_len, cfg, mode):
    """Nothing T×S per call (the BlockMask is (T/128)×(S/128); a mask reading graph inputs is evaluated per call)."""
    return 10.0 * kv_len * kv_len if facts.data_inputs else 0.0


KERNEL = register_kernel(KernelDef(
    "flex", __doc__.splitlines()[0], order=3, check=_check, config=_config, cost=_cost,
    memory=_memory, ops=ATTENTION_OPS, dropout=False,
    run="nngraph.compilers.torch.ops.attention_kernels_flex:flex_core"))
