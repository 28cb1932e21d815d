"""The lowering rules table, for every target × mask × position × dtype × training/inference.

GPU targets are simulated (selection only). Each combination is checked against rules stated here
independently of the implementation: which candidates must be rejected and why, which SDPA variant
and backends (flash for 16-bit without a mask on sm80+, efficient with a mask/bias, cuDNN on sm90+,
never flash for fp32), that the reference is always the last tier, that no forward-only kernel serves
training, the banded tiles exactly for masks with a band, and the length-dependent choice between SDPA and
FlexAttention on the CPU."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from nngraph.compilers.passes.lowering import decide
from nngraph.attention import masks as masks
from nngraph.attention import positions as positions
from nngraph.compilers.targets import Detection, get_target

from lowering_cases import BANDED, MASK_CASES, POSITION_CASES

NO_GPU = Detection("2.13.0", False, None, None, False, ("CPUExecutionProvider",))
TARGETS = ["cpu", "cuda:sm75", "cuda:sm80", "cuda:sm90", "ort-cpu", "ort-cuda"]
DTYPES = ["float32", "float16", "bfloat16"]
MODES = ["inference", "training"]
TORCH_KERNELS = {"reference", "sdpa", "local", "flex", "document"}


def cpu_without_local():
    """The cpu target with the banded kernel removed: FlexAttention's own length/compile trade-off, undisturbed."""
    target = get_target("cpu")
    return dataclasses.replace(target, data={k: v for k, v in target.data.items() if k != "local"})


def _cand(d, kernel):
    return next(c for c in d.candidates if c.kernel == kernel)


def _problems(d, tname, mask_case, pos_case, dtype, mode, dropout=0.0) -> list[str]:
    """Every broken rule for one decision (empty: the decision is right)."""
    out = []
    t = d.target
    sdpa, flex, ref, local = _cand(d, "sdpa"), _cand(d, "flex"), _cand(d, "reference"), _cand(d, "local")
    bias = pos_case in ("alibi", "t5_bias", "shaw", "window_bias")
    causal_only = mask_case == "causal"
    first = d.tiers[0]
    kernels = [x["kernel"] for x in d.tiers]

    def bad(msg):
        out.append(f"{tname}/{mask_case}/{pos_case}/{dtype}/{mode}: {msg} -> {d.tiers}")

    if ref.reason is not None or kernels[-1] != "reference":
        bad("the reference must apply and be the last tier")
    if any(c.reason == "" for c in d.candidates):
        bad("a rejection without a reason")
    if any(c.reason is not None and c.kernel == x for c in d.candidates for x in kernels):
        bad("a rejected kernel in the plan")
    if t.runtime == "onnxruntime":
        if sdpa.reason is None or flex.reason is None or local.reason is None or "runs ONNX Runtime" not in sdpa.reason:
            bad("torch kernels must be rejected on ONNX Runtime targets")
        if first["kernel"] in ("sdpa", "local", "flex"):
            bad("an ONNX Runtime target cannot run torch kernels")
        return out
    for c in d.candidates:
        if c.kernel not in TORCH_KERNELS and c.reason is None:
            bad(f"ONNX kernel {c.kernel} must not apply to a torch target")
    # local: exactly the banded masks, any position, forward and backward
    if (local.reason is None) != (mask_case in BANDED):
        bad(f"the banded kernel applies iff the mask has a band ({local.reason})")
    if local.reason is None and first["kernel"] == "reference":
        bad("the reference must not win where the banded kernel applies")
    if pos_case == "shaw_values":
        if sdpa.reason is None or flex.reason is None or "Shaw relative values" not in sdpa.reason:
            bad("Shaw value terms need the attention weights: only the reference")
        return out
    # flex
    if mode == "training" and t.device == "cpu" and (flex.reason is None or "no backward on cpu" not in flex.reason):
        bad("flex has no backward on the CPU")
    if mode == "training" and dropout and flex.reason is None:
        bad("flex applies no attention dropout")
    if t.device == "cuda" and t.capability < (8, 0) and (flex.reason is None or "sm80+" not in flex.reason):
        bad("flex needs sm80+")
    if mode == "training" and any(not x.get("backward", True) for x in d.tiers[:1]) and len(kernels) == 2:
        bad("training must not rely on a forward-only kernel")
    # sdpa
    learnable = pos_case in ("t5_bias", "shaw", "window_bias")
    if t.device == "cpu":
        if mode == "training" and learnable:
            if sdpa.reason is None or "no gradient for a learnable bias" not in sdpa.reason:
                bad("a learnable bias in training leaves SDPA only its math backend on the CPU")
        elif sdpa.reason is not None:
            bad(f"SDPA must apply on the CPU ({sdpa.reason})")
    if sdpa.reason is None:
        variant, backends = sdpa.config["variant"], sdpa.config["backends"]
        want = "bias" if bias else "causal" if causal_only else "none" if mask_case == "none" else "mask"
        if variant != want:
            bad(f"SDPA variant {variant}, expected {want}")
        if backends[-1] != "MATH":
            bad("MATH must close the pinned backend list")
        if t.device == "cuda":
            sixteen = dtype in ("float16", "bfloat16")
            no_tensor = variant in ("causal", "none")
            if ("FLASH_ATTENTION" in backends) != (sixteen and no_tensor and t.capability >= (8, 0)):
                bad("flash iff fp16/bf16, no mask/bias tensor, sm80+")
            if ("CUDNN_ATTENTION" in backends) != (sixteen and no_tensor and t.capability >= (9, 0)):
                bad("cuDNN iff fp16/bf16, no mask/bias tensor, sm90+")
            if not no_tensor and backends[0] != "EFFICIENT_ATTENTION":
                bad("a mask or bias goes to the memory-efficient backend")
            if sixteen and no_tensor and t.capability >= (8, 0) and backends[0] != "FLASH_ATTENTION":
                bad("flash first when it fits")
        if first["kernel"] == "reference":
            bad("the reference must not win where SDPA applies (it is never faster)")
    return out


def test_the_cases_cover_every_registered_mask_and_position():
    used = set()
    for value, _ in MASK_CASES.values():
        used |= {leaf.name for leaf in masks.parse_mask(value).leaves()}
    assert used == set(masks.MASKS)
    assert {positions.parse_position(v)[0] for v in POSITION_CASES.values()} == set(positions.POSITIONS)


def test_rules_hold_for_every_target_mask_position_dtype_and_mode(attention_graphs):
    problems, seen = [], set()
    for tname, dtype in itertools.product(TARGETS, DTYPES):
        target = get_target(f"{tname}:{dtype}", NO_GPU)
        for (mask_case, pos_case), mode in itertools.product(itertools.product(MASK_CASES, POSITION_CASES), MODES):
            graph = attention_graphs(mask_case, pos_case)
            d = decide(graph, graph.nodes["attn"], target, mode, kv_len=1024)
            seen.add((tname, dtype, mask_case, pos_case, mode))
            problems += _problems(d, tname, mask_case, pos_case, dtype, mode)
    assert len(seen) == len(TARGETS) * len(DTYPES) * len(MASK_CASES) * len(POSITION_CASES) * len(MODES)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("tname", ["cpu", "cuda:sm80"])
def test_attention_dropout_in_training_rules_out_flex(attention_graphs, tname):
    graph = attention_graphs("sliding_window", "none", dropout=0.1)
    d = decide(graph, graph.nodes["attn"], get_target(tname, NO_GPU), "training", kv_len=4096)
    assert "no attention dropout (dropout 0.1 in training)" in _cand(d, "flex").reason or \
        "no backward on cpu" in _cand(d, "flex").reason
    assert not _problems(d, tname, "sliding_window", "none", "float32", "training", dropout=0.1)
    assert d.kernel == "local"  # the banded tiles apply dropout like the reference


def test_banded_masks_use_the_tiles_at_long_lengths_in_both_modes(attention_graphs):
    """Sliding window: SDPA with a dense mask for short sequences, banded tiles from a few hundred keys, train or not."""
    graph = attention_graphs("sliding_window", "none", d_model=512, heads=8, kv_heads=8)
    node = graph.nodes["attn"]
    for mode in ("inference", "training"):
        assert decide(graph, node, "cpu", mode, kv_len=64).kernel == "sdpa"
        long = decide(graph, node, "cpu", mode, kv_len=8192)
        assert long.kernel == "local" and long.tiers[0]["band"] == [31, 0]
        local, sdpa = _cand(long, "local"), _cand(long, "sdpa")
        assert local.costs[8192] * 20 < _cand(long, "reference").costs[8192] and local.costs[8192] < sdpa.costs[8192]
        assert local.memory[8192] < _cand(long, "reference").memory[8192] / 40
        symbolic = decide(graph, node, "cpu", mode)
        assert [t["kernel"] for t in symbolic.tiers] == ["local", "sdpa", "reference"] and symbolic.tiers[0]["min_kv"] > 64
        mem = _cand(symbolic, "local").memory  # linear in T (plus one tile's buffer when no autograd records it)
        assert mem[8192] - mem[4096] == 2 * (mem[4096] - mem[2048]) and mem[8192] < 2.01 * mem[4096]


def test_unbanded_masks_say_why_the_tiles_do_not_apply(attention_graphs):
    for mask_case, why in [("causal", "mask causal has no band"), ("random", "has no band"),
                           ("prefix_lm", "has no band"), ("global_tokens", "has no band")]:
        graph = attention_graphs(mask_case, "none")
        assert why in _cand(decide(graph, graph.nodes["attn"], "cpu", "inference", kv_len=512), "local").reason


def test_cpu_inference_picks_flex_only_where_block_skipping_pays(attention_graphs):
    """Sliding window: SDPA with a dense mask for short sequences, compiled flex from a few thousand keys."""
    graph = attention_graphs("sliding_window", "none")
    node, cpu = graph.nodes["attn"], cpu_without_local()
    short = decide(graph, node, cpu, "inference", kv_len=256)
    long = decide(graph, node, cpu, "inference", kv_len=8192)
    assert short.kernel == "sdpa" and long.kernel == "flex"
    assert _cand(long, "flex").costs[8192] < _cand(long, "sdpa").costs[8192] < _cand(long, "reference").costs[8192]
    # symbolic length: one plan with both, flex above a threshold, SDPA below, the reference last
    tiers = decide(graph, node, cpu, "inference").tiers
    assert [t["kernel"] for t in tiers] == ["flex", "sdpa", "reference"]
    assert tiers[0]["min_kv"] > 256 and tiers[1]["min_kv"] == 0 and not tiers[0]["backward"]
    # training on the CPU: flex has no backward, so never flex
    assert [t["kernel"] for t in decide(graph, node, cpu, "training").tiers] == ["sdpa", "reference"]


def test_causal_attention_uses_is_causal_sdpa_at_every_length(attention_graphs):
    graph = attention_graphs("causal", "none")
    d = decide(graph, graph.nodes["attn"], "cpu", "inference")
    assert [t["kernel"] for t in d.tiers] == ["sdpa", "reference"] and d.tiers[0]["variant"] == "causal"
    flex = _cand(d, "flex")
    assert flex.reason is None and all(flex.costs[L] > _cand(d, "sdpa").costs[L] for L in d.lengths)


def test_compile_cost_is_weighed_against_the_expected_calls(attention_graphs, monkeypatch):
    """With a single expected call the flex compile never pays off; with many it does."""
    graph = attention_graphs("sliding_window", "none")
    target = cpu_without_local()
    monkeypatch.setitem(target.data, "expected_calls", {"inference": 1})
    assert decide(graph, graph.nodes["attn"], target, "inference", kv_len=8192).kernel == "sdpa"
    monkeypatch.setitem(target.data, "expected_calls", {"inference": 100_000})
    assert decide(graph, graph.nodes["attn"], target, "inference", kv_len=8192).kernel == "flex"


def test_an_inference_plan_with_flex_keeps_a_kernel_with_a_backward_for_gradient_calls(attention_graphs):
    graph = attention_graphs("sliding_window", "none")
    d = decide(graph, graph.nodes["attn"], cpu_without_local(), "inference", kv_len=8192)
    assert d.kernel == "flex"
    assert any(t["kernel"] == "sdpa" and t["backward"] for t in d.tiers[1:-1])
    assert d.tiers[-1]["kernel"] == "reference"


def test_ort_targets_take_the_onnx_back_ends_kernels_in_its_order(attention_graphs):
    graph = attention_graphs("causal", "rope")
    d = decide(graph, graph.nodes["attn"], get_target("ort-cpu", NO_GPU), "inference")
    onnx = [c for c in d.candidates if c.kernel not in TORCH_KERNELS]
    assert onnx, "nngraph.compilers.onnx attention_candidates() should be adapted as rules"
    applicable = [c.kernel for c in onnx if c.reason is None]
    assert d.tiers[0]["kernel"] == (applicable[0] if applicable else "reference")


def test_a_kernel_over_the_dense_memory_budget_is_a_last_resort(attention_graphs):
    """ALiBi + causal at 8192 keys: SDPA would materialize a [8, 8192, 8192]-sized fp32 bias (GiBs), flex nothing."""
    graph = attention_graphs("causal", "alibi", d_model=512, heads=8, kv_heads=8)
    d = decide(graph, graph.nodes["attn"], "cpu", "inference", kv_len=8192)
    sdpa, flex = _cand(d, "sdpa"), _cand(d, "flex")
    assert sdpa.memory[8192] > 1024 * 2 ** 20 and flex.memory[8192] == 0
    assert sdpa.score[8192] == 100 * sdpa.costs[8192]
    assert d.kernel == "flex"
    assert [t["kernel"] for t in d.tiers] == ["flex", "sdpa", "reference"] and d.tiers[1]["role"] == "backward"
    from nngraph.compilers.passes.explain import _verdict

    assert "(> 1024 MiB budget: last resort)" in _verdict(d, sdpa)
    small = decide(graph, graph.nodes["attn"], "cpu", "inference", kv_len=512)
    assert small.kernel == "sdpa" and _cand(small, "sdpa").score == _cand(small, "sdpa").costs


def test_flex_tiers_skip_queries_shorter_than_a_block(attention_graphs):
    from nngraph.compilers.torch.ops.attention_kernels import pick_tier

    graph = attention_graphs("sliding_window", "none")
    tiers = decide(graph, graph.nodes["attn"], cpu_without_local(), "inference").tiers
    assert tiers[0]["kernel"] == "flex" and tiers[0]["min_q"] == 128
    assert pick_tier(tiers, 8192, 8192, False, False)["kernel"] == "flex"
    assert pick_tier(tiers, 8192, 1, False, False)["kernel"] == "sdpa"  # a decoding step
    assert pick_tier(tiers, 8192, 8192, True, False)["kernel"] == "sdpa"  # gradients: no CPU backward in flex
