"""The aten kernels each op declares (``@op(..., kernels=)``, what ``nngraph cost`` charges ``kernel_ms`` for)
equal the kernels the node's module launches in the torch CPU lowering.

Oracle: a TorchDispatchMode counting the aten ops each node's module dispatches during one forward, views and
aliases not counted (they allocate nothing and run no loop), at small sizes (batch 2, every other dim 16).
Specs whose nodes all have counts that do not depend on the data or the sizes (no MoE: its experts without
tokens launch nothing; no sliding window: its mask is built differently when the window covers the sequence).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nngraph.compilers.passes import run_passes
from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.check import random_inputs
from nngraph.cost.report import cost_report, sizes_for
from nngraph.spec import check_spec

SPECS = Path(__file__).resolve().parents[3] / "specs"


def _is_view(func) -> bool:
    """An aten op that returns an alias of an input (a view), or one that only relabels it."""
    aliases = any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)
    return aliases or func.__name__.split(".")[0] in ("detach", "lift_fresh", "_unsafe_view")


class _PerNode(TorchDispatchMode):
    """Counts non-view aten ops by the innermost node module running."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.stack and not _is_view(func):
            self.counts[self.stack[-1]] += 1
        return func(*args, **(kwargs or {}))


def _counted(name: str) -> tuple[dict[str, int], Counter[str]]:
    graph, _ = check_spec(SPECS / f"{name}.yaml")
    sizes, _ = sizes_for(graph, {"batch": 2}, None)
    sizes = {k: v if k == "batch" else 16 for k, v in sizes.items()}
    declared = {n["name"]: n["kernels"] for n in cost_report(graph, sizes, "inference", None)["nodes"]}
    lowered, _ = run_passes(graph, "cpu", "inference", dims=sizes)
    module = build_module(lowered).eval()
    mode = _PerNode()
    for path, sub in module.named_modules():
        if path in declared:
            sub.register_forward_pre_hook(lambda _m, _a, path=path: mode.stack.append(path))
            sub.register_forward_hook(lambda _m, _a, _o: mode.stack.pop() and None)
    with torch.no_grad(), mode:
        module(**random_inputs(graph, sizes))
    return declared, mode.counts


@pytest.mark.parametrize("name", ["gpt_char", "qwen2_style", "gemma_style", "gcn", "gin_graph",
                                  "ddpm_unet", "gru_classifier", "mamba_style"])
def test_declared_kernels_equal_the_kernels_each_node_launches(name):
    declared, counted = _counted(name)
    assert counted, "no node module ran"
    assert {n: declared[n] for n in counted} == dict(counted)
