"""GPU kernels of the cuda profile, run only where a CUDA device exists (selection is covered, simulated,
by test_lowering_rules.py): SDPA with flash pinned for fp16/bf16 causal attention, memory-efficient with
a mask, and compiled FlexAttention with a backward, each against the fp32 reference."""

from __future__ import annotations

import copy

import pytest
import torch

from nngraph.compilers.passes.lowering import decide
from nngraph.compilers.targets import get_target
from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.ops.attention_kernels import LoweredAttention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here: the cuda profile's kernels are selected in simulation "
                                       "only (test_lowering_rules.py); running them needs a GPU")


@pytest.mark.parametrize("mask_case, pos_case, kernel, backend", [
    ("causal", "none", "sdpa", "FLASH_ATTENTION"),
    ("sliding_window", "none", "sdpa", "EFFICIENT_ATTENTION"),
    ("sliding_window", "alibi", "flex", None),
])
def test_cuda_kernels_match_the_fp32_reference(attention_graphs, mask_case, pos_case, kernel, backend):
    graph = attention_graphs(mask_case, pos_case, d_model=128, heads=4, kv_heads=2)
    target = get_target("cuda:bf16")
    d = decide(graph, graph.nodes["attn"], target, "training", kv_len=300)
    cand = next(c for c in d.candidates if c.kernel == kernel)
    assert cand.reason is None, cand.reason
    if backend:
        assert cand.config["backends"][0] == backend
    ref = build_module(graph, seed=0).attn.cuda()
    low = LoweredAttention.from_reference(copy.deepcopy(ref), {"tiers": [dict(cand.config, min_kv=0)]}).to(torch.bfloat16)
    x = torch.randn(2, 300, 128, device="cuda")
    xr, xl = x.clone().requires_grad_(), x.to(torch.bfloat16).requires_grad_()
    want, got = ref(xr), low(xl)
    assert low.last_kernel == kernel
    assert (got.float() - want).abs().max().item() < 3e-2
    want.square().sum().backward()
    got.float().square().sum().backward()
    assert (xl.grad.float() - xr.grad).abs().max().item() < 5e-2 * max(1.0, xr.grad.abs().max().item())
