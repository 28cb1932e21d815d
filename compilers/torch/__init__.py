"""The PyTorch back end: a validated nngraph IR -> ``torch.nn.Module`` with a generated ``forward``.

::

    from nngraph.compilers.torch import compile_spec
    model = compile_spec("specs/mlp.yaml", overrides=["hidden=512"], seed=0)
    print(model.source)            # the generated Python (imports + class)
    model(torch.randn(8, 784))     # -> logits tensor

How it works: :mod:`.codegen` writes the Python source of an ``nn.Module``
subclass for the graph -- one ``forward`` line per node, named after the node,
with the spec position and the inferred shape as comments -- and
:mod:`.module` executes it under the filename ``<nngraph:SPEC>`` (registered
in ``linecache``, so tracebacks show the generated lines). Each op's torch
implementation lives in one module of :mod:`.ops` and registers itself
(:mod:`.registry`). Parameters are initialized per op with overrides from the
spec's per-node ``init`` (:mod:`.init`); state dicts use spec names
(:mod:`.state`).
"""

from __future__ import annotations

from pathlib import Path

from nngraph import load_spec
from nngraph.io import write_text_atomic
from nngraph.ir import Graph

from .codegen import generate
from .module import GraphModule, load_source
from .state import LoadReport, StateDictError, load_state_dict, state_dict_for

__all__ = ["GraphModule", "LoadReport", "StateDictError", "build_module", "compile_spec", "emit_python",
           "load_spec", "load_state_dict", "missing_ops", "state_dict_for", "write_python"]


def build_module(graph: Graph, seed: int = 0) -> GraphModule:
    """Compile a validated graph into a model; the same ``seed`` gives the same weights.

    Raises :class:`nngraph.SpecError` for ops without a torch implementation or
    a bad per-node ``init``.
    """
    gen = generate(graph)
    cls = load_source(gen.source, gen.class_name, gen.filename)
    return cls(seed=seed)


def compile_spec(path: str | Path, overrides: list[str] | None = None, seed: int = 0) -> GraphModule:
    """Load, validate and compile a spec file (``overrides`` as for ``--set``)."""
    return build_module(load_spec(path, overrides or []), seed=seed)


def emit_python(graph: Graph) -> str:
    """The standalone Python module for ``graph``: imports and one ``nn.Module`` class.

    Importing it needs the nngraph package (the class builds its layers with
    ``nngraph.compilers.torch.module.make``); ``ClassName(seed=s)`` has the same
    weights as ``build_module(graph, seed=s)``.
    """
    return generate(graph).source


def write_python(graph: Graph, path: str | Path) -> str:
    """Write :func:`emit_python`'s module to ``path``; returns the class name (for ``nngraph compile --emit-python``)."""
    gen = generate(graph)
    write_text_atomic(path, gen.source)
    return gen.class_name


def missing_ops(graph: Graph) -> list[str]:
    """Ops used by ``graph`` that have no torch implementation yet (empty: the graph compiles)."""
    from .registry import impls

    have = impls()
    return sorted({n.op for n in graph.nodes.values()} - set(have))
