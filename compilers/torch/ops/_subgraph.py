"""Blocks used as functions (``message:``, ``update:``, ``expert_block:``, GIN's ``nn:``) as nested generated models.

The front end expands a block-valued op parameter into a closed sub-graph
(``node.params[param].graph``, see :mod:`nngraph.ops._blockfn`). The torch back
end compiles that sub-graph with the ordinary code generator into its own
:class:`~nngraph.compilers.torch.module.GraphModule` class and stores an instance (or
one per expert) as a submodule of the node, so its parameters appear under
``<node>.<param>.<block node>.<param>`` (e.g. ``mp.message.fc.weight``).

The generated ``__init__`` of the outer model rebuilds every node from literals
(:func:`nngraph.compilers.torch.module.make`), where the sub-graph object no longer
exists. So :func:`function_spec`, called by the op's module factory at compile
time, replaces the parameter's value in the node's context by a plain dict --
the block name, the nested class's generated source, its class name and the
order of its forward arguments -- which the code generator then writes into
the ``nng.make(...)`` call as a literal. The emitted Python therefore stays a
standalone file: the nested class is re-created from that source.

Each nested model gets its own seed, drawn from the node's seeded RNG, so
copies (e.g. the experts) start from different weights and the whole model is
still a function of the model seed.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..registry import NodeCtx


def function_spec(ctx: NodeCtx, param: str) -> dict[str, Any] | None:
    """The plain-data description of block parameter ``param`` (None when not given); see the module docstring."""
    value = ctx.params.get(param)
    if value is None:
        return None
    if isinstance(value, Mapping) and "source" in value:
        return dict(value)
    graph = getattr(value, "graph", None)
    if graph is None:
        raise ValueError(f"block {value!r} given as '{param}' was not expanded into a sub-graph")
    from ..codegen import generate  # late: codegen imports the op registry

    gen = generate(graph)
    order = [n for n, gi in graph.inputs.items() if not gi.optional] + [n for n, gi in graph.inputs.items() if gi.optional]
    filename = f"{gen.filename[:-1]}#{ctx.name}.{param}>" if gen.filename.endswith(">") else gen.filename
    spec = {"block": str(value), "class_name": gen.class_name, "filename": filename, "inputs": order,
            "source": gen.source}
    ctx.params[param] = spec
    return spec


def draw_seed() -> int:
    """A seed for a nested model from the current (per-node seeded) RNG."""
    return int(torch.randint(0, 2**62, (), device="cpu"))


def function_module(spec: Mapping[str, Any], seed: int | None = None) -> nn.Module:
    """A new instance of the nested model described by ``spec`` (from :func:`function_spec`)."""
    from ..module import load_source  # late: module imports the op registry

    cls = load_source(spec["source"], spec["class_name"], spec["filename"])
    return cls(seed=draw_seed() if seed is None else seed)


def call_function(fn: nn.Module, inputs: list[str], available: Mapping[str, Any]) -> torch.Tensor:
    """Call a nested model with the tensors its block inputs name (positionally) and return its first output."""
    out = fn(*[available.get(name) for name in inputs])
    if isinstance(out, dict):
        return next(iter(out.values()))
    return out
