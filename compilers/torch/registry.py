"""The torch implementation registry: one entry per nngraph op.

A family's torch implementation is one module in :mod:`nngraph.compilers.torch.ops`
that registers its ops with :func:`torch_op`; the package discovers it (the
same way :mod:`nngraph.ops` does), so nothing else changes to add one.

An implementation has up to four parts:

``emit(ctx, e) -> str``
    The Python *expression* the generated ``forward`` computes for the node, in
    one line, e.g. ``f"{e.self}({e.x})"`` or ``f"torch.relu({e.x})"``. ``e``
    (an :class:`Emit`) names the variables holding the node's inputs and the
    attribute path of its module. A multi-output op's expression evaluates to
    a tuple in the op's output order; the generated code unpacks it.
``module(ctx) -> nn.Module | nn.Parameter | nn.Buffer | None``
    Builds the node's learnable state from the IR node (params, input/output
    types). It is stored on the model at the node's dotted name, so a module
    with a submodule ``up`` gives state_dict keys ``<node>.up.weight``. It is
    called at build time, with the RNG seeded per node.
``init(ctx) -> {param: initializer}``
    Default initializers by parameter name (a name matches ``name`` exactly or
    as a dotted suffix, so ``"weight"`` covers ``up.weight`` and
    ``down.weight``); the spec's per-node ``init`` overrides them (see
    :mod:`nngraph.compilers.torch.init`). Parameters without an initializer keep the
    constructor's (seeded) default.
``post_init(module, ctx)``
    Runs after the initializers (e.g. re-zero an embedding's padding row).
``tp(module, n) -> {sub-path: role} | reason``
    How tensor parallelism over ``n`` ranks splits the node's module (:mod:`nngraph.compilers.train.tensor_parallel`):
    roles :data:`TP_COLWISE` / :data:`TP_ROWWISE` for its linear layers, :data:`TP_HEADS` for the module itself
    when it must count heads per rank, :data:`TP_LINEAR` / :data:`TP_VOCAB` for a plain linear / embedding whose
    role the graph decides; a string says why it stays whole; a ``ValueError`` that its sizes do not divide by n.

:class:`NodeCtx` is what the factories see. It is built from the IR at
compile time and rebuilt from literals by the generated ``__init__``, so it
holds only plain data: no graph, no torch objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from nngraph.types import Dim, TensorType

#: (initializer name, keyword arguments), e.g. ``("normal", {"std": 0.02})``.
InitSpec = tuple[str, dict[str, Any]]


@dataclass
class NodeCtx:
    """An IR node as the torch factories see it: plain data only."""

    name: str
    op: str
    params: dict[str, Any]
    inputs: dict[str, TensorType | None]
    variadic: list[TensorType] = field(default_factory=list)
    outputs: dict[str, TensorType] = field(default_factory=dict)
    #: ops (with params) of the nodes that read this node's output; known at
    #: compile time only (used by default initializers, e.g. He init before a ReLU).
    consumers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: what shape inference resolved for the back ends (``Node.meta``: e.g. the attention description)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def x(self) -> TensorType:
        """The first input's type (first variadic input for variadic ops)."""
        first = next((t for t in self.inputs.values() if t is not None), None)
        if first is None and self.variadic:
            return self.variadic[0]
        if first is None:
            raise ValueError(f"node '{self.name}' ({self.op}) has no connected input")
        return first

    @property
    def out(self) -> TensorType:
        """The first output's type."""
        return next(iter(self.outputs.values()))

    @property
    def in_features(self) -> int:
        """The concrete last dim of the first input (linear layers' fan-in)."""
        d = self.x.shape[-1]
        if not isinstance(d, int):
            raise ValueError(f"node '{self.name}': last input dim must be concrete, got {d!r}")
        return d


@dataclass
class Emit:
    """Names the generated ``forward`` uses for one node."""

    #: the node's input variables by input name ("None" for unconnected optional inputs)
    inputs: dict[str, str]
    #: variables of the variadic inputs, in order
    variadic: list[str]
    #: attribute path of the node's own module/parameter, e.g. ``self.layers[3].attn``
    self: str
    #: attribute path of any node's module: ``module_of("embed") -> "self.embed"``
    module_of: Callable[[str], str]
    #: runtime expression for a symbolic dim: ``dim("batch") -> "x.shape[0]"``, or None if unknown
    dim: Callable[[Dim], str | None]

    @property
    def x(self) -> str:
        """The first input's variable."""
        first = next((v for v in self.inputs.values() if v != "None"), None)
        return first if first is not None else self.variadic[0]

    @property
    def all_inputs(self) -> list[str]:
        """Named inputs then variadic inputs, connected ones only."""
        return [v for v in self.inputs.values() if v != "None"] + list(self.variadic)


EmitFn = Callable[[NodeCtx, Emit], str]
ModuleFn = Callable[[NodeCtx], Any]
InitFn = Callable[[NodeCtx], Mapping[str, "str | InitSpec"]]
PostInitFn = Callable[[Any, NodeCtx], None]
LinkFn = Callable[[NodeCtx, str, Callable[[str], str]], list[str]]  # (ctx, own path, node -> path) -> init lines
TpFn = Callable[[Any, int], "dict[str, str] | str"]  # (module, tp ranks) -> {sub-path: role}, or why it stays whole

#: tensor-parallel roles (``tp`` of an implementation): the weight split by output features (each rank computes
#: its slice of the outputs), by input features (each rank a partial sum, all-reduced), the module's head counts
#: become per-rank counts, a plain linear / embedding whose role depends on its neighbours in the graph
TP_COLWISE, TP_ROWWISE, TP_HEADS, TP_LINEAR, TP_VOCAB = "colwise", "rowwise", "heads", "linear", "vocab"


@dataclass
class TorchOpDef:
    """The torch implementation of one nngraph op."""

    name: str
    emit: EmitFn
    module: ModuleFn | None = None
    init: InitFn | Mapping[str, "str | InitSpec"] | None = None
    post_init: PostInitFn | None = None
    link: LinkFn | None = None   # lines run once every module exists: state read from another node's module
    tp: TpFn | None = None       # how tensor parallelism splits the module (None: it stays whole)

    def default_init(self, ctx: NodeCtx) -> dict[str, "str | InitSpec"]:
        """The op's default initializers for this node."""
        if self.init is None:
            return {}
        return dict(self.init(ctx) if callable(self.init) else self.init)


_IMPLS: dict[str, TorchOpDef] = {}


def torch_op(name: str, *, module: ModuleFn | None = None, init: Any = None,
             post_init: PostInitFn | None = None, link: LinkFn | None = None,
             tp: TpFn | None = None) -> Callable[[EmitFn], EmitFn]:
    """Register the decorated ``emit(ctx, e) -> str`` as the torch implementation of op ``name``; ``link(ctx,
    path, path_of)``: ``__init__`` lines run after every module is made (e.g. reuse another node's table);
    ``tp(module, n)``: its tensor-parallel roles (see the module doc)."""

    def register(fn: EmitFn) -> EmitFn:
        if name in _IMPLS:
            raise ValueError(f"torch implementation of op '{name}' registered twice")
        _IMPLS[name] = TorchOpDef(name=name, emit=fn, module=module, init=init, post_init=post_init,
                                 link=link, tp=tp)
        return fn

    return register


def impls() -> dict[str, TorchOpDef]:
    """Every registered torch implementation, loading the op modules on first use."""
    from . import ops

    ops.load_all()
    return _IMPLS


def get_impl(name: str) -> TorchOpDef | None:
    """The torch implementation of op ``name``, or None if there is none yet."""
    return impls().get(name)
