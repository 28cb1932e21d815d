"""Run-time support for generated models: the base class, containers, module factory, source loading.

Generated code (in memory, or a file written by ``emit_python``) imports this
module as ``nng`` and uses:

* :class:`GraphModule` -- base class of every generated model. Its
  ``__call__`` adds a note to an exception raised inside the generated
  ``forward`` that names the spec node (``in node 'fc1' (linear) at
  specs/mlp.yaml:12:5``) and, when the cause is a graph input that does not
  match its declared shape, says so.
* :class:`Scope` -- the container of one block instance (``self.enc``,
  ``self.layers[3]``); repeated blocks are ``nn.ModuleList`` s of scopes.
* :func:`make` -- builds one node's module/parameter/buffer through the op's
  registered factory, with the RNG seeded from ``(seed, node name)``, then
  applies the resolved initializers. A node's initial weights therefore depend
  only on the seed, its name and its own params -- not on the rest of the graph.
* ``nng.ops.<family>`` -- helpers of the op implementations that generated
  expressions may call.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import linecache
import re
import sys
import traceback
import types
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from nngraph.types import TensorType, format_shape

from .init import InitSpec, apply_inits
from .registry import NodeCtx, get_impl, impls

impls()  # load every op family so generated code can use nng.ops.<family>
ops = importlib.import_module("nngraph.compilers.torch.ops")

_COMMENT = re.compile(r"#\s*(?P<pos>\S+)\s+(?P<node>\S+)\s+\((?P<op>[^)]*)\)")


class Scope(nn.Module):
    """The modules of a block instance kept inline; it has no ``forward`` (the model's forward reads its members)."""


class Block(nn.Module):
    """Base class of the generated class of one block copy (``self.h[3]``); ``nng_prefix`` is its name in the
    model (``h.3``), so an error inside its ``forward`` names the full node (``h.3.attn``)."""

    nng_prefix: str = ""
    #: the spec's block name (set by the generated class)
    nng_block: str = ""
    #: activation checkpointing: recompute this copy's forward in the backward pass instead of keeping its
    #: intermediates (``torch.utils.checkpoint``, non-reentrant: the gradients are exactly those without it)
    nng_checkpoint: bool = False

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.nng_prefix = prefix

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.nng_checkpoint and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(super().__call__, *args, use_reentrant=False, **kwargs)
        return super().__call__(*args, **kwargs)


def node_module(model: nn.Module, name: str) -> nn.Module | None:
    """The module of node ``name`` (its state-dict prefix) in ``model``, or None: a node without learnable state
    (or a tied layer, which reads another node's) has none."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def blocks(model: nn.Module) -> list[Block]:
    """The block copies generated as classes in ``model``, outermost first."""
    return [m for m in model.modules() if isinstance(m, Block)]


def node_seed(seed: int, name: str) -> int:
    """The RNG seed of one node: a stable hash of the model seed and the node name."""
    digest = hashlib.blake2b(f"{int(seed)}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def make(op: str, name: str, seed: int, *, params: Mapping[str, Any], inputs: Mapping[str, TensorType | None],
         outputs: Mapping[str, TensorType], init: Mapping[str, InitSpec], variadic: list[TensorType] | None = None) -> Any:
    """Build node ``name``'s learnable state with op ``op``'s factory, seeded, then initialize it."""
    impl = get_impl(op)
    if impl is None or impl.module is None:
        raise LookupError(f"op '{op}' (node '{name}') has no torch module factory")
    ctx = NodeCtx(name=name, op=op, params=dict(params), inputs=dict(inputs), variadic=list(variadic or []),
                  outputs=dict(outputs))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(node_seed(seed, name))
        obj = impl.module(ctx)
        apply_inits(obj, init)
        if impl.post_init is not None:
            impl.post_init(obj, ctx)
    return obj


class GraphModule(nn.Module):
    """Base class of generated models (see the module docstring).

    Class attributes set by the generated class: ``spec_file``, ``spec_name``,
    ``input_types`` (forward argument -> declared :class:`TensorType`) and
    ``output_names`` (``forward`` returns one tensor when there is one output,
    else a dict in this order); for decoding (:func:`nngraph.compilers.decoding.decoding_facts`),
    ``input_roles`` (argument -> ``key_padding`` | ``positions``) and ``unpositioned`` (position
    embeddings that read no positions input).
    """

    spec_file: str = ""
    spec_name: str = ""
    input_types: dict[str, TensorType] = {}
    output_names: tuple[str, ...] = ()
    input_roles: dict[str, str] = {}
    unpositioned: tuple[str, ...] = ()
    _nng_source: str | None = None

    @property
    def source(self) -> str:
        """The generated Python source of this model's class (a standalone module)."""
        cls = type(self)
        if cls._nng_source is not None:
            return cls._nng_source
        return Path(cls.forward.__code__.co_filename).read_text(encoding="utf-8")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            return super().__call__(*args, **kwargs)
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            _annotate(self, exc, args, kwargs)
            raise

    def __reduce_ex__(self, protocol: Any) -> Any:
        if type(self)._nng_source is None:
            return super().__reduce_ex__(protocol)
        # built in memory: the class is not importable, so pickle the source and the state
        return _rebuild, (type(self)._nng_source, type(self).__name__, type(self).__dict__.get("_nng_filename"),
                          self.state_dict(), self.training)


def _rebuild(source: str, class_name: str, filename: str | None, state: dict, training: bool) -> GraphModule:
    cls = load_source(source, class_name, filename or "<nngraph>")
    module = cls(seed=0)
    module.load_state_dict(state)
    return module.train(training)


# ----- in-memory source ------------------------------------------------------
_SOURCES: dict[str, str] = {}


def _register(filename: str, source: str) -> str:
    """Register ``source`` with linecache under ``filename`` (suffixed ``#2``, ... if taken by other source)."""
    name, n = filename, 1
    while _SOURCES.get(name, source) != source:
        n += 1
        name = f"{filename[:-1]}#{n}>" if filename.endswith(">") else f"{filename}#{n}"
    _SOURCES[name] = source
    linecache.cache[name] = (len(source), None, source.splitlines(keepends=True), name)
    return name


def load_source(source: str, class_name: str, filename: str) -> type[GraphModule]:
    """Execute generated source under ``filename`` (registered in linecache) and return its model class.

    The code runs as a module registered in ``sys.modules`` (``_nngraph_<class>_<hash>``;
    torch.compile looks globals up by module name), once per distinct source:
    building the same graph again reuses the class.
    """
    digest = hashlib.blake2b(source.encode(), digest_size=6).hexdigest()
    mod_name = f"_nngraph_{class_name}_{digest}"
    existing = sys.modules.get(mod_name)
    if existing is not None and getattr(existing, "__nngraph_source__", None) == source:
        return getattr(existing, class_name)
    filename = _register(filename, source)
    mod = types.ModuleType(mod_name, f"generated by nngraph from {filename}")
    mod.__file__ = filename
    mod.__nngraph_source__ = source
    exec(compile(source, filename, "exec"), mod.__dict__)  # noqa: S102 - our own generated code
    cls = getattr(mod, class_name)
    cls._nng_source = source
    cls._nng_filename = filename
    sys.modules[mod_name] = mod
    return cls


# ----- error notes -----------------------------------------------------------
def _source_lines(cls: type, filename: str) -> list[str]:
    lines = linecache.getlines(filename)
    if not lines and getattr(cls, "_nng_source", None):
        lines = cls._nng_source.splitlines(keepends=True)
    return lines


def node_at_line(cls: type, lineno: int) -> tuple[str, str, str] | None:
    """(node, op, position) of the generated ``forward`` statement at ``lineno``, from its comment line."""
    lines = _source_lines(cls, cls.forward.__code__.co_filename)
    if not 2 <= lineno <= len(lines):
        return None
    match = _COMMENT.search(lines[lineno - 2])
    return (match["node"], match["op"], match["pos"]) if match else None


def _annotate(module: GraphModule, exc: BaseException, args: tuple, kwargs: dict) -> None:
    """Notes on ``exc``: the spec node of the innermost generated ``forward`` line it passed (the model's or a
    block class's, same file), that line, and any graph input that contradicts its declared type."""
    cls = type(module)
    filename = cls.forward.__code__.co_filename
    hit = None
    for frame, ln in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == filename and frame.f_code.co_name == "forward":
            hit = frame, ln
    if hit is None:
        return
    frame, lineno = hit
    notes = list(getattr(exc, "__notes__", []))
    found = node_at_line(cls, lineno)
    if found is not None:
        node, op, pos = found
        prefix = getattr(frame.f_locals.get("self"), "nng_prefix", "")
        note = f"in node '{prefix + '.' if prefix else ''}{node}' ({op}) at {pos}"
        if note in notes:
            return
        exc.add_note(note)
        line = _source_lines(cls, filename)[lineno - 1].strip()
        exc.add_note(f"  generated code, {filename}:{lineno}: {line}")
    for problem in check_inputs(module, args, kwargs):
        exc.add_note(problem)


def check_inputs(module: GraphModule, args: tuple, kwargs: dict) -> list[str]:
    """Messages for forward arguments whose rank, sizes or dtype contradict the spec's declared inputs."""
    try:
        bound = inspect.signature(type(module).forward).bind(module, *args, **kwargs).arguments
    except TypeError:
        return []
    problems: list[str] = []
    symbols: dict[str, tuple[str, int]] = {}
    for name, declared in module.input_types.items():
        value = bound.get(name)
        if not isinstance(value, torch.Tensor):
            continue
        got = tuple(value.shape)
        where = f"graph input '{name}' has shape {list(got)}, the spec declares {format_shape(declared.shape)}"
        if len(got) != declared.rank:
            problems.append(f"{where} (rank {declared.rank})")
            continue
        for i, (want, size) in enumerate(zip(declared.shape, got)):
            if isinstance(want, int) and want != size:
                problems.append(f"{where} (dim {i}: expected {want}, got {size})")
                break
            if isinstance(want, str):
                seen = symbols.setdefault(want, (name, size))
                if seen[1] != size:
                    problems.append(f"{where} ('{want}' is {size} here but {seen[1]} in '{seen[0]}')")
                    break
        if str(value.dtype).removeprefix("torch.") != declared.dtype:
            problems.append(f"graph input '{name}' has dtype {str(value.dtype).removeprefix('torch.')}, "
                            f"the spec declares {declared.dtype}")
    return problems
