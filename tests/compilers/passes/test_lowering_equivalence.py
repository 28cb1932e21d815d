"""Lowered attention equals the reference (the oracle) for every mask × position of the registries.

At a sequence length that is not a multiple of the 128 block (130), with grouped-query heads, O(1)
random weights and rows whose keys are all masked (lengths 0; ``causal ∧ ¬window``), each kernel
the CPU rules allow is forced in turn: SDPA and the banded tiles forward and gradients (x and every
parameter) within 1e-5 (gradients: 1e-5 of the largest gradient, ~10 here), FlexAttention forward within 1e-5 (uncompiled here, so the whole matrix runs without a compile
each; one compiled instance is checked at the end: FlexAttention has no backward on the CPU). The oracle is
the reference evaluated in float64: the fp32 reference carries its own rounding, which is not the kernels'
error — measured on Longformer + Shaw values, its gradient of the value table is 5e-4–8e-4 off float64 and
varies run to run (BLAS summation order), the banded tiles' 1.8e-5. Also:
the lowered model keeps the reference's parameter names and weights, cross-attention, and KV-cache
decoding through the lowered kernels."""

from __future__ import annotations

import copy

import pytest
import torch
from lowering_cases import BANDED, MASK_CASES, POSITION_CASES

from nngraph.compilers.lowered import compile_for
from nngraph.compilers.passes.lowering import decide
from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.ops import attention_kernels_flex as flex
from nngraph.compilers.torch.ops.attention_kernels import LoweredAttention

T, B, D = 130, 2, 32
TOL = 1e-5


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    gen = _g(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def _inputs(extra: tuple[str, ...], t: int = T) -> dict[str, torch.Tensor]:
    lengths = torch.tensor([0, 70])  # batch row 0: every key is padding (the reference attends uniformly)
    docs = torch.cat([torch.zeros(40), torch.ones(50), torch.full((t - 90,), 2.0)]).long()
    table = {"lengths": lengths, "key_padding": torch.arange(t)[None, :] >= lengths[:, None],
             "doc_ids": torch.stack([docs, docs.flip(0)])}
    return {k: table[k] for k in extra}


@pytest.fixture(scope="module", autouse=True)
def eager_flex():
    old = flex.set_compile(False)
    yield
    flex.set_compile(old)


def _modules(attention_graphs, mask_case, pos_case):
    graph = attention_graphs(mask_case, pos_case)
    ref = build_module(graph, seed=0).attn
    _randomize(ref)
    return graph, ref


def _lowered(ref, cfg):
    return LoweredAttention.from_reference(copy.deepcopy(ref), {"tiers": [dict(cfg, min_kv=0)]})


def _close(a: torch.Tensor, b: torch.Tensor, what: str, scale: float = 1.0) -> None:
    """max |a - b| <= 1e-5 · max(1, scale): gradients are compared on the scale of the largest gradient of the
    backward pass (~10 with these weights; fp32 sums of such terms carry ~1e-5 of it as rounding)."""
    assert a.shape == b.shape, what
    err = (a - b).abs().max().item()
    tol = TOL * max(1.0, scale)
    assert err <= tol, f"{what}: max abs diff {err:.2e} > {tol:.2e}"


CASES = [(m, p) for m in MASK_CASES for p in POSITION_CASES]


@pytest.mark.parametrize("mask_case, pos_case", CASES, ids=[f"{m}-{p}" for m, p in CASES])
def test_each_applicable_cpu_kernel_equals_the_reference(attention_graphs, mask_case, pos_case):
    graph, ref = _modules(attention_graphs, mask_case, pos_case)
    inputs = _inputs(MASK_CASES[mask_case][1])
    x = torch.randn(B, T, D, generator=_g(1))
    w = torch.randn(B, T, D, generator=_g(2))
    d = decide(graph, graph.nodes["attn"], "cpu", "inference", kv_len=T)
    by_kernel = {c.kernel: c for c in d.candidates}
    oracle, xr = copy.deepcopy(ref).double(), x.double().requires_grad_()
    want = oracle(xr, **inputs)
    (want * w.double()).sum().backward()
    scale = max(g.abs().max().item() for g in [xr.grad] + [p.grad for p in oracle.parameters()])
    if pos_case == "shaw_values":
        assert by_kernel["sdpa"].reason and by_kernel["flex"].reason
    else:
        _check_sdpa_and_flex(ref, oracle, by_kernel, x, w, xr, inputs, want, scale, mask_case)
    _check_local(ref, oracle, by_kernel, x, w, xr, inputs, want, scale, mask_case)


def _check_sdpa_and_flex(ref, oracle, by_kernel, x, w, xr, inputs, want, scale, mask_case):
    # SDPA: forward and gradients
    _same_forward_and_gradients(ref, oracle, by_kernel["sdpa"].config, x, w, xr, inputs, want, scale)
    # FlexAttention: forward only (no backward on the CPU). Masks that may leave a row with no visible key are
    # not given to compiled flex on the CPU (no logsumexp there); the uncompiled kernel still patches such rows.
    cfg = by_kernel["flex"].config
    if cfg is None:
        assert "cannot return the logsumexp" in by_kernel["flex"].reason
        cfg = {"kernel": "flex", "compiled": False, "block": 128, "gqa": True, "fix_empty_rows": True}
    fl = _lowered(ref, cfg)
    with torch.no_grad():
        got = fl(x, **inputs)
    assert fl.last_kernel == "flex"
    _close(got, want.detach(), "flex forward")


def _check_local(ref, oracle, by_kernel, x, w, xr, inputs, want, scale, mask_case):
    # banded tiles: forward and gradients, with tiles of 16 so 130 queries make 9 tiles, the last one partial
    if by_kernel["local"].config is None:
        assert mask_case not in BANDED, by_kernel["local"].reason
        return
    assert mask_case in BANDED
    cfg = dict(by_kernel["local"].config, chunk=16)
    _same_forward_and_gradients(ref, oracle, cfg, x, w, xr, inputs, want, scale)
    # without autograd the tiles run one at a time, in place, with the mask as an additive bias: same output
    low = _lowered(ref, cfg)
    with torch.no_grad():
        _close(low(x, **inputs), want.detach(), "local forward without autograd")


def _same_forward_and_gradients(ref, oracle, cfg, x, w, xr, inputs, want, scale):
    """The kernel of ``cfg`` (built from the fp32 ``ref``) gives the float64 ``oracle``'s output and gradients (x and
    every parameter)."""
    low, kernel = _lowered(ref, cfg), cfg["kernel"]
    xl = x.clone().requires_grad_()
    got = low(xl, **inputs)
    assert low.last_kernel == kernel
    _close(got, want, f"{kernel} forward")
    (got * w).sum().backward()
    _close(xl.grad, xr.grad, f"{kernel} d/dx", scale)
    for (name, p), q in zip(oracle.named_parameters(), low.parameters()):
        _close(q.grad, p.grad, f"{kernel} d/d{name}", scale)




@pytest.mark.parametrize("mode", ["inference", "training"])
def test_the_chosen_plan_equals_the_reference_in_both_modes(attention_graphs, mode):
    for mask_case, pos_case in [("longformer", "alibi"), ("causal", "rope"), ("document", "t5_bias")]:
        graph = attention_graphs(mask_case, pos_case)
        ref, _ = build_module(graph, seed=0), None
        model, results = compile_for(graph, "cpu", mode, seed=0)
        assert results[1].changes and model.attn.plan["mode"] == mode
        inputs = _inputs(MASK_CASES[mask_case][1])
        x = torch.randn(B, T, D, generator=_g(3))
        if mode == "training":
            model.train(), ref.train()
        _close(model(x, **inputs), ref(x, **inputs), f"{mask_case}/{pos_case}")
        # training on the CPU: T5's learnable bias leaves SDPA only its math backend, so the document kernel (the
        # reference's math one document at a time) serves it; (the banded tiles serve Longformer's window only from
        # ~1k keys: below, SDPA with a mask is cheaper)
        want = {"longformer": "sdpa", "causal": "sdpa"}.get(mask_case, "document" if mode == "training" else "sdpa")
        assert model.attn.last_kernel == want


def test_lowered_models_keep_the_reference_parameter_names_and_weights(attention_graphs):
    graph = attention_graphs("sliding_window", "t5_bias")
    ref = build_module(graph, seed=7)
    low, _ = compile_for(graph, "cpu", seed=7)
    assert type(low.attn) is LoweredAttention and type(ref.attn) is not LoweredAttention
    a, b = ref.state_dict(), low.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    _randomize(ref, 5)
    low.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 50, D, generator=_g(4))
    with torch.no_grad():
        _close(low(x), ref(x), "after loading the reference's weights")


def test_cross_attention_with_key_padding_is_lowered_and_equal(spec_file):
    from nngraph import load_spec

    graph = load_spec(spec_file("""
        nngraph: 1
        name: cross
        inputs:
          x: {shape: [batch, tgt, 32], dtype: float32}
          memory: {shape: [batch, src, 24], dtype: float32}
          lengths: {shape: [batch], dtype: int64}
        graph:
          - {name: attn, op: attention, in: {x: x, context: memory, lengths: lengths}, heads: 4, kv_heads: 1, mask: key_padding}
        outputs: [attn]
    """))
    ref = build_module(graph, seed=0)
    _randomize(ref)
    low, _ = compile_for(graph, "cpu", seed=0)
    low.load_state_dict(ref.state_dict())
    x, mem = torch.randn(2, 9, 32, generator=_g(5)), torch.randn(2, 140, 24, generator=_g(6))
    lengths = torch.tensor([140, 3])
    with torch.no_grad():
        _close(low(x, mem, lengths), ref(x, mem, lengths), "cross")
    assert low.attn.last_kernel == "sdpa"


def test_kv_cache_decoding_through_lowered_kernels_matches_the_reference(spec_file):
    from nngraph.compilers.torch.ops.attention_cache import generate
    from nngraph import load_spec

    graph = load_spec(spec_file("""
        nngraph: 1
        name: lm
        inputs: {tokens: {shape: [batch, seq], dtype: int64}}
        graph:
          - {name: embed, op: embedding, in: tokens, num: 50, dim: 32}
          - {name: attn, op: attention, in: embed, heads: 4, kv_heads: 2, mask: causal, position: alibi}
          - {name: attn2, op: attention, in: attn, heads: 4, mask: {type: sliding_window, window: 4}, position: rope}
          - {name: head, op: linear, in: attn2, out: 50}
        outputs: {logits: head}
    """))
    ref = build_module(graph, seed=0)
    _randomize(ref)
    low, _ = compile_for(graph, "cpu", seed=0)
    low.load_state_dict(ref.state_dict())
    prompt = torch.randint(0, 50, (2, 1030), generator=_g(7))  # long enough for the plans' SDPA and banded tiers
    want = generate(ref, prompt, 4, use_cache=False)
    assert torch.equal(generate(low, prompt, 4, use_cache=True), want)
    assert low.attn.last_kernel == "sdpa" and low.attn2.last_kernel == "local"


@pytest.fixture(scope="module")
def compiled_flex_case(attention_graphs):
    """ONE compiled FlexAttention instance (compiling costs seconds): sliding window + global tokens, ALiBi."""
    graph = attention_graphs("window_global", "alibi")
    ref = build_module(graph, seed=0).attn
    _randomize(ref)
    d = decide(graph, graph.nodes["attn"], "cpu", "inference", kv_len=4096)
    cfg = next(c.config for c in d.candidates if c.kernel == "flex")
    assert cfg["compiled"]
    return ref, _lowered(ref, cfg)


def test_compiled_flex_attention_equals_the_reference_at_a_length_off_the_block_grid(compiled_flex_case):
    ref, low = compiled_flex_case
    flex.set_compile(True)
    try:
        t = 300
        inputs = {}
        x = torch.randn(B, t, D, generator=_g(8))
        with torch.no_grad():
            got, want = low(x, **inputs), ref(x, **inputs)
        assert low.last_kernel == "flex" and flex._STATE["fn"] is not None
        _close(got, want, "compiled flex")
        # with gradients on, the plan's tiers skip flex (no CPU backward) rather than fail
        plan = {"tiers": [dict(low.plan["tiers"][0]), {"kernel": "sdpa", "variant": "bias", "backends": [], "min_kv": 0}]}
        both = LoweredAttention.from_reference(copy.deepcopy(ref), plan)
        xg = x.clone().requires_grad_()
        _close(both(xg, **inputs), want, "gradient call")
        assert both.last_kernel == "sdpa"
    finally:
        flex.set_compile(False)


@pytest.mark.parametrize("mask_case, pos_case", [("sliding_window", "none"), ("longformer", "t5_bias")])
def test_banded_tiles_fall_back_to_the_max_subtracted_softmax_when_scores_overflow(attention_graphs, monkeypatch,
                                                                                    mask_case, pos_case):
    """Without autograd the tiles use exp(s) without subtracting the row max; weights ×6 (scores ×36, some above
    exp's fp32 limit of ~88) overflow it, and the tiles that fail must be recomputed the reference's way — same
    float64 output within 1e-5 of its scale (larger scores are ill-conditioned in fp32 for any kernel)."""
    from nngraph.compilers.torch.ops import attention_kernels_local_loop as loop

    graph, ref = _modules(attention_graphs, mask_case, pos_case)
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(6.0)
    inputs = _inputs(MASK_CASES[mask_case][1])
    x = torch.randn(B, T, D, generator=_g(8))
    failed: list[list[int]] = []
    unusable = loop._unusable_sums
    monkeypatch.setattr(loop, "_unusable_sums", lambda sums: failed.append(unusable(sums)) or failed[-1])
    d = decide(graph, graph.nodes["attn"], "cpu", "inference", kv_len=T)
    low = _lowered(ref, dict(next(c.config for c in d.candidates if c.kernel == "local"), chunk=16))
    with torch.no_grad():
        want, got = copy.deepcopy(ref).double()(x.double(), **inputs), low(x, **inputs)
    assert failed and failed[0], "the scores were meant to overflow the max-free softmax"
    assert torch.isfinite(got).all()
    _close(got, want, "banded tiles after the fallback", want.abs().max().item())
