"""``nngraph cost``'s forward and backward FLOPs equal torch's FlopCounterMode on the compiled module, for every zoo spec.

The oracle is torch's own count of the products the generated module executes (``FlopCounterMode``:
mm/addmm/bmm/convolution, 2 per multiply-add). Attention is compared with every query-key pair counted
(``dense_attention``), because the reference module computes the whole score matrix; the visible-pair count
is pinned in tests/nngraph/test_cost.py.

Most specs run on the meta device (shapes only: fast, and it decomposes the LSTM, whose fused oneDNN
kernel FlopCounterMode does not see on a real CPU tensor). Graph ops (``.item()`` on edge ids) and MoE
(``bincount`` of routed tokens) need real values, so they run on the CPU at small sizes. Switch's expert
capacity drops a data-dependent number of tokens: its count is exact with a capacity that drops none
(capacity_factor 8 ≥ experts/top_k) and an upper bound otherwise.

Backward: FlopCounterMode counts what ``loss.backward()`` executes for a loss summing every float output the
weights reach, with the module in training mode (the products autograd runs: no input gradient of a first
layer, whose input is data; none for an LSTM's absent initial state). One documented correction of the oracle:
FlopCounterMode's ``convolution_backward`` formula ignores ``groups`` in its weight-gradient term (it counts a
grouped convolution's weight gradient as if every input channel met every output channel, ``groups`` times
too many: ConvNeXt's and MobileNetV2's depthwise convolutions, Mamba's causal conv1d). The test counts that
term as the weight gradient's multiply-adds are -- as many as the forward convolution's -- with torch's own
``conv_flop_count``; the input-gradient term is torch's unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.check import random_inputs
from nngraph.cost.model import grad_nodes, node_backward_flops, node_flops
from nngraph.cost.report import sizes_for
from nngraph.spec import check_spec

SPECS = sorted((Path(__file__).resolve().parents[3] / "specs").glob("*.yaml"))
#: need real values (see the module doc); the rest run on the meta device
ON_CPU = {"gat", "gcn", "gin_graph", "mixtral_style", "switch_style"}
#: overrides that make a count exact (see the module doc)
EXACT = {"switch_style": ["capacity_factor=8"]}


def _conv_backward(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, _output_padding,
                   _groups, output_mask, out_shape, **_) -> int:
    """torch's convolution_backward count with the weight gradient's multiply-adds counted as the forward's (see the
    module doc): grad_input = conv_transpose(grad_out, w), grad_weight = one product per (input, tap, output)."""
    grad_input = conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed) if output_mask[0] else 0
    grad_weight = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed) if output_mask[1] else 0
    return grad_input + grad_weight


def _floats(out) -> list[torch.Tensor]:
    """Every float tensor of a module's output (a tensor, a dict or a tuple of them) that a weight reaches."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() and out.requires_grad else []
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else ()
    return [t for v in values for t in _floats(v)]


def _measure(name: str, overrides: list[str]) -> tuple[tuple[int, int], tuple[int, int]]:
    """((FlopCounterMode's forward, the cost model's), (FlopCounterMode's backward, the cost model's)) at batch 2,
    every other dim 16, the module in training mode."""
    graph, diag = check_spec(Path(SPECS[0].parent, f"{name}.yaml"), overrides)
    assert not [d for d in diag if d.severity == "error"]
    sizes, _ = sizes_for(graph, {"batch": 2}, None)
    sizes = {k: v if k == "batch" else 16 for k, v in sizes.items()}
    inputs = random_inputs(graph, sizes)
    device = "cpu" if name in ON_CPU else "meta"
    with torch.device(device):
        module = build_module(graph).train()
    inputs = {k: v.to(device) for k, v in inputs.items()}
    with FlopCounterMode(display=False) as forward:
        out = module(**inputs)
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward}) as back:
        sum(t.sum() for t in _floats(out)).backward()
    grads = grad_nodes(graph)
    mine = sum(node_flops(graph, n, sizes, dense_attention=True) for n in graph.nodes.values())
    mine_back = sum(node_backward_flops(graph, n, sizes, grads, dense_attention=True) for n in graph.nodes.values())
    return (forward.get_total_flops(), mine), (back.get_total_flops(), mine_back)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_forward_and_backward_flops_equal_flop_counter_mode(path):
    (torch_flops, mine), (torch_back, mine_back) = _measure(path.stem, EXACT.get(path.stem, []))
    assert torch_flops > 0 and torch_back > 0
    assert abs(mine - torch_flops) <= 0.01 * torch_flops, (mine, torch_flops)
    assert abs(mine_back - torch_back) <= 0.01 * torch_back, (mine_back, torch_back)


def test_moe_with_a_capacity_counts_at_most_what_runs_and_at_least_the_router():
    (torch_flops, mine), _ = _measure("switch_style", [])
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
