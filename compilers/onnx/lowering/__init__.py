"""Export-time lowering: the compiled torch model's dynamic parts swapped for ONNX-friendly forwards while tracing.

The TorchScript exporter records the ops one run executes, so anything decided in Python from
run-time *values* -- a loop over the sequence, ``.item()``, ``.tolist()``, arithmetic on a token
count -- would be frozen at the sample's sizes. :func:`lowered` patches, for the duration of the
export only (instance attributes, removed afterwards):

* ``attention`` nodes -> the chosen kernel's forward (:mod:`nngraph.compilers.onnx.kernels`); a module
  shared by several nodes (``share: true``) dispatches per call in graph order;
* ``mamba`` -> the recurrence as an ONNX ``Scan`` (:mod:`.ssm`);
* ``moe`` -> routing, capacity and grouped dispatch with tensor-valued counts (:mod:`.moe`);
* ``global_pool`` -> one-hot pooling with a run-time graph count (:mod:`.graph_nn`);
* mask predicates' ``logical_not`` (``v ^ True``, which the tracer cannot record for a tensor)
  -> ``torch.logical_not`` for tensors;
* a BigBird ``random`` mask -> its rows drawn for the (fixed) traced lengths as plain ints (the export
  fixes the sequence dims of such nodes, see :func:`nngraph.compilers.onnx.export.length_bound_symbols`);
* with a KV cache, ``position_embedding`` -> positions ``past_len + arange(T)`` with ``past_len`` a
  tensor read from the first past input's shape (the torch module's cache slot keeps a Python
  int, which the tracer can confuse with other ints of the same value).

RNN/LSTM/GRU layers need nothing: ``nn.LSTM`` and friends export as the ONNX ``LSTM``/``GRU``/``RNN``
ops, which loop over a dynamic sequence themselves.

:func:`min_opset` declares, per op, the default-domain opset its exported form needs when that is above
the export's floor (:mod:`nngraph.compilers.onnx.opsets`); the ``Scan`` of the SSM and the
``ScatterElements(add)`` of MoE and message passing (both 16) and the rest are within it.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

from ..kernels import KVIO, Choice


#: torch's ``scatter_reduce(amax)``, exported as ``ScatterElements(reduction="max")`` (:mod:`..symbolics`)
_SCATTER_MAX = (18, "ScatterElements with reduction max (opset 18)")
#: op -> the (opset, why) its node's export needs beyond the floor, or None. GAT's segment softmax subtracts each
#: node's max score over its incoming edges; SAGE and message passing aggregate by max with ``aggr: max``
_NEEDS = {
    "gat_conv": lambda node: _SCATTER_MAX,
    "sage_conv": lambda node: _SCATTER_MAX if node.params.get("aggr") == "max" else None,
    "message_passing": lambda node: _SCATTER_MAX if node.params.get("aggr") == "max" else None,
}


def min_opset(node: Any) -> tuple[int, str] | None:
    """(opset, why) when exporting IR ``node`` needs a default-domain opset above the export's floor, else None."""
    need = _NEEDS.get(node.op)
    return need(node) if need is not None else None


class _AttentionDispatch:
    """The patched forward of one attention module: the kernel of the node being called (graph order)."""

    def __init__(self, module: Any, choices: list[Choice], io: KVIO | None):
        self.module, self.choices, self.io, self.calls = module, choices, io, 0

    def __call__(self, x: Any, context: Any = None, lengths: Any = None, key_padding: Any = None,
                 doc_ids: Any = None) -> Any:
        choice = self.choices[self.calls % len(self.choices)]
        self.calls += 1
        return choice.kernel.forward(self.module, choice.site, self.io, x, context, lengths, key_padding, doc_ids)


def _patch(module: Any, fn: Any, patched: list[Any]) -> None:
    module.forward = fn
    patched.append(module)


@contextlib.contextmanager
def lowered(model: Any, graph: Any, choices: dict[str, Choice], io: KVIO | None = None) -> Iterator[
        list[_AttentionDispatch]]:
    """Patch ``model`` (built from ``graph``) for export; yields the attention dispatchers (reset per call)."""
    from nngraph.compilers.torch.ops import graph_nn
    from nngraph.attention import masks as _attn_masks

    from . import graph_nn as gnn_lowering
    from .moe import moe_forward
    from .ssm import mamba_forward

    patched: list[Any] = []
    dispatch: dict[int, _AttentionDispatch] = {}
    saved_pool, saved_not = graph_nn.global_pool, _attn_masks.logical_not

    def logical_not(v: Any) -> Any:
        import torch

        return torch.logical_not(v) if isinstance(v, torch.Tensor) else saved_not(v)

    try:
        for node in graph.nodes.values():
            module = _module_of(model, node.name)
            if node.name in choices and module is not None:
                d = dispatch.get(id(module))
                if d is None:
                    d = dispatch[id(module)] = _AttentionDispatch(module, [], io)
                    _patch(module, d, patched)
                d.choices.append(choices[node.name])
            elif node.op == "mamba" and module is not None:
                _patch(module, functools.partial(mamba_forward, module), patched)
            elif node.op == "moe" and module is not None:
                _patch(module, functools.partial(moe_forward, module), patched)
            elif node.op == "position_embedding" and io is not None and module is not None:
                _patch(module, functools.partial(_position_forward, module, io), patched)
        graph_nn.global_pool = gnn_lowering.global_pool
        _attn_masks.logical_not = logical_not
        yield list(dispatch.values())
    finally:
        graph_nn.global_pool = saved_pool
        _attn_masks.logical_not = saved_not
        for module in patched:
            module.__dict__.pop("forward", None)


def _position_forward(module: Any, io: KVIO, x: Any, positions: Any = None) -> Any:
    """PositionEmbedding.forward with positions continuing after the cached ones (a tensor offset)."""
    import torch

    from nngraph.compilers.torch.ops.position import sinusoid_table

    if positions is None:
        positions = torch.arange(x.shape[-2]) + io.past_len
    if module.kind == "learned":
        return x + module.weight[positions]
    return x + sinusoid_table(positions, module.dim, dtype=x.dtype)


def _module_of(model: Any, name: str) -> Any:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None
