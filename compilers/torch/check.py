"""Run a compiled model on random inputs and compare real output shapes with the IR's inference.

Symbolic dims get concrete sizes (``batch=2``, other names 8 unless given),
integer inputs get ids in the range their consumers accept (token ids below an
embedding's ``num``), and every output shape the front end inferred -- symbolic
expressions like ``(h-3)//2+1`` included, evaluated with the same whitelisted
evaluator -- is compared with what torch produced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch

from nngraph.errors import Diagnostic, SpecError
from nngraph.expr import ExprError, evaluate, names_in
from nngraph.limits import parse_dims  # noqa: F401 - the --dim parser, where the torch commands look for it
from nngraph.ir import Graph
from nngraph.types import DTYPE_BYTES, Dim, TensorType, format_shape, is_float

DEFAULT_DIMS = {"batch": 2}
DEFAULT_SYMBOLIC = 8

_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                 "float64": torch.float64, "int64": torch.int64, "int32": torch.int32, "int8": torch.int8,
                 "uint8": torch.uint8, "bool": torch.bool}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for an IR dtype name."""
    return _TORCH_DTYPES[name]


def concrete_dim(dim: Dim, sizes: Mapping[str, int]) -> int:
    """A dim's size given sizes for the symbols (an expression like ``seq*2`` is evaluated)."""
    if isinstance(dim, int):
        return dim
    return int(evaluate(dim, lambda name: sizes.get(name, DEFAULT_DIMS.get(name, DEFAULT_SYMBOLIC))))


def concrete_shape(t: TensorType, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """All dims of ``t`` made concrete."""
    return tuple(concrete_dim(d, sizes) for d in t.shape)


def _int_high(graph: Graph, name: str, sizes: Mapping[str, int]) -> int:
    """Exclusive upper bound for random ids of integer input ``name``, from what consumes it."""
    high = None
    for node in graph.nodes.values():
        if not any(r.node == name for r in node.all_refs()):
            continue
        if node.op == "embedding":
            bound = node.params["num"]
        elif node.op == "position_embedding":
            bound = node.params.get("max_len") or DEFAULT_SYMBOLIC
        else:
            continue
        high = bound if high is None else min(high, bound)
    return high if high is not None else 2


def random_inputs(graph: Graph, sizes: Mapping[str, int] | None = None, seed: int = 0,
                  include_optional: bool = False) -> dict[str, torch.Tensor]:
    """Random tensors for the graph inputs (optional ones only if asked), reproducible by ``seed``."""
    sizes = dict(sizes or {})
    check_sizes(graph, sizes)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, gi in graph.inputs.items():
        if gi.optional and not include_optional:
            continue
        shape = concrete_shape(gi.type, sizes)
        dtype = torch_dtype(gi.type.dtype)
        if is_float(gi.type.dtype):
            out[name] = torch.randn(shape, generator=gen).to(dtype)
        elif gi.type.dtype == "bool":
            out[name] = torch.rand(shape, generator=gen) < 0.5
        elif (ids := _graph_ids(graph, name, shape, sizes)) is not None:
            out[name] = ids.to(dtype)
        else:
            out[name] = torch.randint(0, _int_high(graph, name, sizes), shape, generator=gen, dtype=dtype)
    return out


def check_sizes(graph: Graph, sizes: Mapping[str, int]) -> None:
    """Refuse, located at the input or node, ``sizes`` at which the graph cannot run: a value with a dim below 1
    (a kernel larger than a symbolic dim's size: ``h-10`` at h=8 is -2) or one value bigger than the machine's
    memory (``--dim batch=10**9``). A SpecError (exit 1) before any tensor exists, instead of torch's
    RuntimeError or an allocation failure mid-run."""
    from nngraph.readers import human_bytes, machine_memory

    memory = machine_memory()
    values = [(gi.pos, f"input '{name}'", gi.type) for name, gi in graph.inputs.items()]
    values += [(node.pos, f"node '{node.name}' ({node.op})" + (f" output '{out}'" if len(node.outputs) > 1 else ""), t)
               for node in graph.nodes.values() for out, t in node.outputs.items()]
    for pos, what, t in values:
        try:
            shape = concrete_shape(t, sizes)
        except (ExprError, TypeError, ValueError):
            continue  # a dim we cannot evaluate here: the run itself reports it
        bad = next((i for i, n in enumerate(shape) if n < 1), None)
        if bad is not None:
            raise SpecError([Diagnostic(pos, f"{what} has dim {bad} = {t.shape[bad]} = {shape[bad]} at "
                                        f"{_sizes_text(t.shape[bad], sizes)}", _size_hint(t.shape[bad], sizes))])
        need = DTYPE_BYTES.get(t.dtype, 8) * math.prod(shape)
        if need > memory:
            raise SpecError([Diagnostic(pos, f"{what} {list(shape)} at {_sizes_text(format_shape(t.shape), sizes)} "
                                        f"needs {human_bytes(need)}, more than this machine's {human_bytes(memory)} "
                                        "of memory", "give smaller sizes with --dim NAME=INT")])


def _sizes_text(dims: str | int, sizes: Mapping[str, int]) -> str:
    """``h=8 (the default for a symbolic dim not given with --dim)`` for the symbols ``dims`` names."""
    names = names_in(f"${{{dims}}}")
    given = [f"{n}={sizes[n]}" for n in names if n in sizes]
    assumed = [f"{n}={concrete_dim(n, {})}" for n in names if n not in sizes]
    text = ", ".join(given + assumed) or "these sizes"
    return text + (" (the size assumed for a symbolic dim not given with --dim)" if assumed else "")


def _size_hint(dim: str | int, sizes: Mapping[str, int]) -> str:
    """How to make ``dim`` at least 1: the smallest size of its one symbol that does (searched up to max_dim)."""
    names = names_in(f"${{{dim}}}")
    if len(names) != 1:
        return "pass larger sizes with --dim NAME=INT"
    name, low, high = names[0], 1, 1
    while high < 2**31 and _dim_at(dim, sizes, name, high) < 1:
        low, high = high, high * 2
    if high >= 2**31:
        return f"pass a larger {name} with --dim {name}=INT"
    while low < high:  # the smallest size in (low, high] with dim >= 1 (the dims of a shape grow with their input)
        mid = (low + high) // 2
        low, high = (mid + 1, high) if _dim_at(dim, sizes, name, mid) < 1 else (low, mid)
    return f"pass --dim {name}=INT with INT at least {high} (the kernels and strides of this node need it)"


def _dim_at(dim: str | int, sizes: Mapping[str, int], name: str, size: int) -> int:
    try:
        return concrete_dim(dim, {**sizes, name: size})
    except (ExprError, TypeError, ValueError):
        return 0


def _graph_ids(graph: Graph, name: str, shape: tuple[int, ...], sizes: Mapping[str, int]) -> torch.Tensor | None:
    """For a ``batch`` vector read by global_pool: sorted graph ids using every id 0..G-1 (G = num_graphs), so
    the pooled output has the G rows the spec infers; None for other inputs."""
    for node in graph.nodes.values():
        ref = node.inputs.get("batch") if node.op == "global_pool" else None
        if ref is not None and ref.node == name and len(shape) == 1:
            g = concrete_dim(node.params["num_graphs"], sizes)
            if 1 <= g <= shape[0]:
                return torch.arange(shape[0]) * g // shape[0]
    return None


@dataclass
class ForwardCheck:
    """Result of :func:`forward_check`: output shapes seen vs inferred, and mismatches."""

    inputs: dict[str, tuple[int, ...]]
    outputs: dict[str, tuple[tuple[int, ...], tuple[int, ...] | None]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every output has the inferred shape."""
        return not self.problems


def forward_check(module: torch.nn.Module, graph: Graph, sizes: Mapping[str, int] | None = None,
                  seed: int = 0) -> ForwardCheck:
    """Run ``module`` once (eval mode, no grad) and compare output shapes with the IR's."""
    sizes = dict(sizes or {})
    inputs = random_inputs(graph, sizes, seed)
    result = ForwardCheck({k: tuple(v.shape) for k, v in inputs.items()})
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(**inputs)
    finally:
        module.train(was_training)
    produced = out if isinstance(out, dict) else {next(iter(graph.outputs)): out}
    for name, ref in graph.outputs.items():
        got = tuple(produced[name].shape)
        inferred = graph.type_of(ref)
        try:
            want = concrete_shape(inferred, sizes) if inferred is not None else None
        except (ExprError, TypeError, ValueError):
            want = None
        result.outputs[name] = (got, want)
        if want is not None and got != want:
            result.problems.append(f"output '{name}': torch gave {list(got)}, the spec infers "
                                   f"{format_shape(inferred.shape)} = {list(want)}")
    return result


def describe(check: ForwardCheck) -> str:
    """A short human-readable summary."""
    lines = [f"forward check on random inputs {', '.join(f'{k}{list(v)}' for k, v in check.inputs.items())}:"]
    for name, (got, want) in check.outputs.items():
        mark = "ok" if want is None or got == want else "MISMATCH"
        lines.append(f"  {name}: {list(got)} {mark}")
    lines += [f"  error: {p}" for p in check.problems]
    return "\n".join(lines)
