"""``nngraph cost``'s FLOPs equal torch's FlopCounterMode on the compiled module, for every zoo spec.

The oracle is torch's own count of the products the generated module executes (``FlopCounterMode``:
mm/addmm/bmm/convolution, 2 per multiply-add). Attention is compared with every query-key pair counted
(``dense_attention``), because the reference module computes the whole score matrix; the visible-pair count
is pinned in tests/nngraph/test_cost.py.

Most specs run on the meta device (shapes only: fast, and it decomposes the LSTM, whose fused oneDNN
kernel FlopCounterMode does not see on a real CPU tensor). Graph ops (``.item()`` on edge ids) and MoE
(``bincount`` of routed tokens) need real values, so they run on the CPU at small sizes. Switch's expert
capacity drops a data-dependent number of tokens: its count is exact with a capacity that drops none
(capacity_factor 8 ≥ experts/top_k) and an upper bound otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.check import random_inputs
from nngraph.cost.model import node_flops
from nngraph.cost.report import sizes_for
from nngraph.spec import check_spec

SPECS = sorted((Path(__file__).resolve().parents[3] / "specs").glob("*.yaml"))
#: need real values (see the module doc); the rest run on the meta device
ON_CPU = {"gat", "gcn", "gin_graph", "mixtral_style", "switch_style"}
#: overrides that make a count exact (see the module doc)
EXACT = {"switch_style": ["capacity_factor=8"]}


def _measure(name: str, overrides: list[str]) -> tuple[int, int]:
    """(torch's FlopCounterMode total, the cost model's total) at batch 2, every other dim 16."""
    graph, diag = check_spec(Path(SPECS[0].parent, f"{name}.yaml"), overrides)
    assert not [d for d in diag if d.severity == "error"]
    sizes, _ = sizes_for(graph, {"batch": 2}, None)
    sizes = {k: v if k == "batch" else 16 for k, v in sizes.items()}
    inputs = random_inputs(graph, sizes)
    device = "cpu" if name in ON_CPU else "meta"
    with torch.device(device):
        module = build_module(graph).eval()
    inputs = {k: v.to(device) for k, v in inputs.items()}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(**inputs)
    mine = sum(node_flops(graph, n, sizes, dense_attention=True) for n in graph.nodes.values())
    return counter.get_total_flops(), mine


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_flops_equal_flop_counter_mode(path):
    torch_flops, mine = _measure(path.stem, EXACT.get(path.stem, []))
    assert torch_flops > 0
    assert abs(mine - torch_flops) <= 0.01 * torch_flops, (mine, torch_flops)


def test_moe_with_a_capacity_counts_at_most_what_runs_and_at_least_the_router():
    torch_flops, mine = _measure("switch_style", [])
    assert torch_flops <= mine <= 1.25 * torch_flops


def _profiled_peak(module: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """The most bytes torch.profiler's memory timeline shows allocated at once during one forward (inputs excluded)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                                  with_stack=True) as prof:
        module(**inputs)
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        live += size if action.name == "CREATE" else -size if action.name == "DESTROY" else 0
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("name,sizes", [("mlp", {"batch": 64}), ("vae", {"batch": 64}),
                                        ("resnet18", {"batch": 2})])
def test_inference_peak_live_tensors_within_15_percent_of_the_profiler(name, sizes):
    from nngraph.cost.model import node_cost, peak_live_bytes

    graph, _ = check_spec(SPECS[0].parent / f"{name}.yaml")
    inputs = random_inputs(graph, sizes)
    module = build_module(graph).eval()
    costs = {n: node_cost(graph, node, sizes) for n, node in graph.nodes.items()}
    mine = peak_live_bytes(graph, costs, sizes) - sum(v.numel() * v.element_size() for v in inputs.values())
    measured = _profiled_peak(module, inputs)
    assert abs(mine - measured) <= 0.15 * measured, (mine, measured)
