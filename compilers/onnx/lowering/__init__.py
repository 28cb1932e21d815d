"""Export-time lowering: the compiled torch model's dynamic parts swapped for ONNX-friendly forwards while tracing.

Each op's lowering is one registration in its own module (:mod:`.registry`: ``@lowering``, discovered):

* ``mamba`` -> the recurrence as an ONNX ``Scan`` (:mod:`.ssm`);
* ``moe`` -> routing, capacity and grouped dispatch with tensor-valued counts (:mod:`.moe`);
* ``global_pool`` -> one-hot pooling with a run-time graph count; message passing: the opset its
  scatters need (:mod:`.graph_nn`);
* RNN/LSTM/GRU layers -> the ONNX ``LSTM``/``GRU``/``RNN`` ops, which loop over a dynamic sequence
  themselves; unrolled loops (``recur``, ``act``, ``ode``) (:mod:`.recurrent`);
* with a KV cache, ``position_embedding`` -> positions ``past_len + arange(T)`` (:mod:`.position`);
* mask predicates (:mod:`.masks`): a BigBird ``random`` mask -> its rows for the (fixed) traced lengths
  as a constant.

``attention`` nodes run the chosen kernel's forward (:mod:`nngraph.compilers.onnx.kernels`); a module
shared by several nodes (``share: true``) dispatches per call in graph order.

:func:`lowered` installs all of it for the duration of one export, as instance attributes (removed
afterwards) and through the torch back end's trace hook (:mod:`nngraph.compilers.torch.trace_hooks`).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

from ..kernels import KVIO, Choice
from .registry import EMITTERS, LOWERINGS, Lowering, declare, discover, emits, lowering

__all__ = ["EMITTERS", "LOWERINGS", "Lowering", "declare", "discover", "emits", "lowered", "lowering",
           "lowering_of", "min_opset", "stateful_ops"]


def min_opset(node: Any) -> tuple[int, str] | None:
    """(opset, why) when exporting IR ``node`` needs a default-domain opset above the export's floor, else None."""
    entry = discover().get(node.op)
    return entry.needs(node) if entry is not None and entry.needs is not None else None


def lowering_of(graph: Any) -> dict[str, str]:
    """How each dynamic node (other than attention) is lowered: node name -> the lowering's one line."""
    table = discover()
    return {n.name: table[n.op].how for n in graph.nodes.values() if n.op in table and table[n.op].how}


def stateful_ops() -> set[str]:
    """Ops with state that is not a key/value cache (``--kv-cache`` refuses them)."""
    return {op for op, entry in discover().items() if entry.stateful}


class _AttentionDispatch:
    """The patched forward of one attention module: the kernel of the node being called (graph order)."""

    def __init__(self, module: Any, choices: list[Choice], io: KVIO | None):
        self.module, self.choices, self.io, self.calls = module, choices, io, 0

    def __call__(self, x: Any, context: Any = None, lengths: Any = None, key_padding: Any = None,
                 doc_ids: Any = None, positions: Any = None) -> Any:
        choice = self.choices[self.calls % len(self.choices)]
        self.calls += 1
        return choice.kernel.forward(self.module, choice.site, self.io, x, context, lengths, key_padding, doc_ids,
                                     positions)


def _forwards(model: Any, graph: Any, choices: dict[str, Choice], io: KVIO | None) -> tuple[dict[int, Any], list]:
    """(id(module) -> (module, its export forward), the attention dispatchers) for the modules of ``graph``."""
    from nngraph.compilers.torch.module import node_module

    table = discover()
    forwards: dict[int, Any] = {}
    dispatch: dict[int, _AttentionDispatch] = {}
    for node in graph.nodes.values():
        module = node_module(model, node.name)
        entry = table.get(node.op)
        if module is None:
            continue
        if node.name in choices:
            if id(module) not in dispatch:
                dispatch[id(module)] = _AttentionDispatch(module, [], io)
                forwards[id(module)] = (module, dispatch[id(module)])
            dispatch[id(module)].choices.append(choices[node.name])
        elif entry is not None and entry.forward is not None and (io is not None or not entry.kv_only):
            forwards[id(module)] = (module, functools.partial(entry.forward, module, io))
    return forwards, list(dispatch.values())


@contextlib.contextmanager
def lowered(model: Any, graph: Any, choices: dict[str, Choice], io: KVIO | None = None) -> Iterator[
        list[_AttentionDispatch]]:
    """Install the lowerings on ``model`` (built from ``graph``) for export; yields the attention dispatchers
    (reset per call)."""
    from nngraph.compilers.torch.trace_hooks import replacing

    forwards, dispatchers = _forwards(model, graph, choices, io)
    functions = {op: entry.function for op, entry in discover().items() if entry.function is not None}
    try:
        for module, forward in forwards.values():
            module.forward = forward
        with replacing(functions):
            yield dispatchers
    finally:
        for module, _ in forwards.values():
            module.__dict__.pop("forward", None)

