"""The primitive registry: every op's parameters, inputs, outputs and shape rule.

Each primitive family lives in one module of :mod:`nngraph.ops` and registers
its ops with the :func:`op` decorator; nothing else needs to change to add one.
The JSON Schema, the spec reference and the CLI's op list are all derived from
what is registered here.

An op's shape rule receives an :class:`InferCtx` (resolved parameters and input
tensor types) and returns the output type, or a dict of them for multi-output
ops. It reports problems with :meth:`InferCtx.fail`, which the validator turns
into an error at the node (or at the offending parameter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from .types import Dim, TensorType, dims_differ, format_shape, is_float, is_int


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

#: A custom checker returns a list of (sub-path, message) problems, empty if fine.
Checker = Callable[[Any], list[tuple[str, str]]]


@dataclass
class Param:
    """One op parameter: its kind, default, bounds and description.

    kinds: ``int``, ``float``, ``bool``, ``str``, ``enum`` (one of ``choices``),
    ``ints`` (an int or a list of ints, e.g. kernel sizes), ``int_list``,
    ``ref`` (the name of another node), ``custom`` (``schema`` + ``check``).
    """

    kind: str
    doc: str
    default: Any = REQUIRED
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    schema: dict | None = None
    check: Checker | None = None

    @property
    def required(self) -> bool:
        """True when the spec must give this parameter."""
        return self.default is REQUIRED


def p_int(doc: str, default: Any = REQUIRED, min: int | None = 1, max: int | None = None) -> Param:
    """An integer parameter (≥ 1 unless ``min`` says otherwise)."""
    return Param("int", doc, default, min=min, max=max)


def p_float(doc: str, default: Any = REQUIRED, min: float | None = None, max: float | None = None) -> Param:
    """A real-valued parameter."""
    return Param("float", doc, default, min=min, max=max)


def p_bool(doc: str, default: Any = False) -> Param:
    """A boolean flag."""
    return Param("bool", doc, default)


def p_str(doc: str, default: Any = REQUIRED) -> Param:
    """A free-form string."""
    return Param("str", doc, default)


def p_enum(doc: str, choices: Iterable[Any], default: Any = REQUIRED) -> Param:
    """One of a fixed set of values."""
    return Param("enum", doc, default, choices=tuple(choices))


def p_ints(doc: str, default: Any = REQUIRED, min: int | None = 1) -> Param:
    """An int or a list of ints (per spatial dim), e.g. a kernel size."""
    return Param("ints", doc, default, min=min)


def p_int_list(doc: str, default: Any = REQUIRED, min: int | None = None) -> Param:
    """A list of ints."""
    return Param("int_list", doc, default, min=min)


def p_ref(doc: str, default: Any = None) -> Param:
    """The name of another node (e.g. the embedding a linear layer ties to)."""
    return Param("ref", doc, default)


class ShapeError(Exception):
    """Raised by a shape rule; the validator reports it at the node or parameter."""

    def __init__(self, message: str, hint: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message, self.hint, self.param = message, hint, param


@dataclass(frozen=True)
class RefInfo:
    """What a shape rule may know about a node named by a ``ref`` param (e.g. ``tie``)."""

    op: str
    params: dict[str, Any]
    type: TensorType


@dataclass
class InferCtx:
    """What a shape rule sees: the node's resolved params and its input types."""

    node: str
    op: "OpDef"
    params: dict[str, Any]
    inputs: dict[str, TensorType | None]
    variadic: list[TensorType] = field(default_factory=list)
    refs: dict[str, RefInfo] = field(default_factory=dict)
    #: what the rule resolved for the back ends (e.g. the attention description); copied into ``Node.meta``
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def x(self) -> TensorType:
        """The first input."""
        first = next(iter(self.inputs.values()), None)
        if first is None and self.variadic:
            return self.variadic[0]
        assert first is not None
        return first

    def fail(self, message: str, hint: str | None = None, param: str | None = None) -> Any:
        """Stop shape inference for this node with an error."""
        raise ShapeError(message, hint, param)

    def need_rank(self, t: TensorType, ranks: Sequence[int] | int, what: str = "input") -> None:
        """Fail unless ``t`` has one of the given ranks."""
        ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
        if t.rank not in ranks:
            want = " or ".join(str(r) for r in ranks)
            self.fail(f"{what} must have rank {want}, got rank {t.rank} {format_shape(t.shape)}",
                      self.op.shape_hint)

    def need_min_rank(self, t: TensorType, rank: int, what: str = "input") -> None:
        """Fail unless ``t`` has at least ``rank`` dims."""
        if t.rank < rank:
            self.fail(f"{what} must have at least {rank} dims, got {format_shape(t.shape)}", self.op.shape_hint)

    def need_float(self, t: TensorType, what: str = "input") -> None:
        """Fail unless ``t`` is floating point."""
        if not is_float(t.dtype):
            self.fail(f"{what} must be a floating-point tensor, got {t.dtype}",
                      "feed it through an embedding (for token ids) or cast it first")

    def need_int(self, t: TensorType, what: str = "input") -> None:
        """Fail unless ``t`` holds integers."""
        if not is_int(t.dtype):
            self.fail(f"{what} must be an integer tensor, got {t.dtype}", "declare the graph input with dtype: int64")

    def need_dim(self, got: Dim, expected: Dim, what: str, param: str | None = None, hint: str | None = None) -> None:
        """Fail when two dims are provably different."""
        if dims_differ(got, expected):
            self.fail(f"{what}: expected {expected}, got {got}", hint, param)

    def need_divisible(self, value: int, by: int, what: str, param: str | None = None) -> None:
        """Fail unless ``value % by == 0``."""
        if isinstance(value, int) and isinstance(by, int) and by and value % by:
            self.fail(f"{what}: {value} is not divisible by {by}", f"choose values where {value} % {by} == 0", param)


InferFn = Callable[[InferCtx], "TensorType | dict[str, TensorType]"]
CountFn = Callable[[InferCtx], int]
#: an op's FLOP rule: forward FLOPs of one node at concrete sizes (see :mod:`nngraph.cost.rules`)
FlopsFn = Callable[[Any], int]


@dataclass
class OpDef:
    """A registered primitive."""

    name: str
    family: str
    doc: str
    params: dict[str, Param]
    inputs: tuple[str, ...]
    infer: InferFn
    outputs: tuple[str, ...] | Callable[[dict], tuple[str, ...]] = ("out",)
    count_params: CountFn | None = None
    #: forward FLOPs at concrete sizes (multiply-adds counted 2, as torch's FlopCounterMode); None: no
    #: contraction (elementwise, normalization, indexing ops cost memory traffic only)
    flops: FlopsFn | None = None
    #: backward FLOPs at concrete sizes when the default (:func:`nngraph.cost.model.default_backward`: the weight
    #: gradient of every product, plus the input gradient when an input needs one) does not hold for this op
    backward: FlopsFn | None = None
    #: aten kernels one call of the node launches in the torch CPU lowering, views not counted (an int, or a rule
    #: on the node at concrete sizes): each pays the profile's ``kernel_ms``, which dominates small models
    kernels: "int | FlopsFn" = 1
    #: separate matrix products the node's FLOPs are split into (an int or a rule): the roofline reads the GEMM
    #: curve at FLOPs / products -- an MoE's experts, a recurrence's time steps are many small products, not one
    products: "int | FlopsFn" = 1
    #: the profile's ``gemm_curve`` its products read (None: its family's, else ``default``): a block of
    #: convolutions in another family (a U-Net ``res_block``) reads ``conv``
    curve: str | None = None
    #: bytes the node reads again beyond its inputs, outputs and parameters read once (an int or a rule at concrete
    #: sizes): a recurrence multiplies its hidden-to-hidden weights at every step, so it reads them once a step
    reread: "int | FlopsFn" = 0
    example: dict | None = None
    shape_hint: str | None = None
    #: made by nngraph itself, never written in YAML: the back-end ops passes create (``sdpa``,
    #: ``attention_lowered``) and the expander's ``skipped_block``; known to :func:`lookup` (so
    #: :meth:`nngraph.ir.Graph.lint` and inference check them) but not to :func:`registry`, the schema or the docs
    internal: bool = False

    @property
    def summary(self) -> str:
        """First line of the docstring."""
        return (self.doc or "").strip().splitlines()[0] if self.doc else ""

    def output_names(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """Names of this op's outputs for the given params."""
        return self.outputs(dict(params)) if callable(self.outputs) else self.outputs

    @property
    def required_inputs(self) -> list[str]:
        """Declared inputs that must be connected."""
        return [i for i in self.inputs if not i.endswith("?") and not i.startswith("*")]

    @property
    def input_names(self) -> list[str]:
        """Declared input names without the ``?``/``*`` markers."""
        return [i.strip("?*") for i in self.inputs]

    @property
    def variadic(self) -> str | None:
        """The variadic input's name, if the op takes any number of inputs."""
        return next((i[1:] for i in self.inputs if i.startswith("*")), None)


_REGISTRY: dict[str, OpDef] = {}
#: internal ops (:attr:`OpDef.internal`), kept apart so every user-facing list (schema, docs, CLI, the
#: expander's op lookup) reads :data:`_REGISTRY` alone and a spec cannot name them
_INTERNAL: dict[str, OpDef] = {}


def op(name: str, *, family: str, inputs: Sequence[str] = ("x",), params: Mapping[str, Param] | None = None,
       outputs: Sequence[str] | Callable[[dict], tuple[str, ...]] = ("out",), count: CountFn | None = None,
       example: dict | None = None, shape_hint: str | None = None,
       internal: bool = False, flops: FlopsFn | None = None,
       backward: FlopsFn | None = None, kernels: "int | FlopsFn" = 1,
       products: "int | FlopsFn" = 1, curve: str | None = None,
       reread: "int | FlopsFn" = 0) -> Callable[[InferFn], OpDef]:
    """Register the decorated shape rule as primitive ``name``; its docstring documents the op.

    ``internal=True`` declares an op only nngraph creates, never a spec (see :attr:`OpDef.internal`)."""

    def register(fn: InferFn) -> OpDef:
        if name in _REGISTRY or name in _INTERNAL:
            raise ValueError(f"op '{name}' registered twice")
        definition = OpDef(name=name, family=family, doc=(fn.__doc__ or "").strip(), params=dict(params or {}),
                           inputs=tuple(inputs), infer=fn,
                           outputs=outputs if callable(outputs) else tuple(outputs), count_params=count,
                           flops=flops, backward=backward, kernels=kernels, products=products, curve=curve,
                           reread=reread, example=example,
                           shape_hint=shape_hint, internal=internal)
        (_INTERNAL if internal else _REGISTRY)[name] = definition
        return definition

    return register


def registry() -> dict[str, OpDef]:
    """All registered ops, loading every family module on first use."""
    from . import ops  # noqa: F401 - importing the package registers every family

    ops.load_all()
    return _REGISTRY


def get_op(name: str) -> OpDef | None:
    """The op called ``name``, or None."""
    return registry().get(name)


def internal_ops() -> dict[str, OpDef]:
    """The internal ops (made by passes or the expander, never written in YAML)."""
    registry()
    return _INTERNAL


def lookup(name: str) -> OpDef | None:
    """Any op of the closed IR, user-facing or internal, by name (None: not an op at all)."""
    return registry().get(name) or _INTERNAL.get(name)


def families() -> dict[str, list[OpDef]]:
    """Ops grouped by family, in registration order."""
    out: dict[str, list[OpDef]] = {}
    for definition in registry().values():
        out.setdefault(definition.family, []).append(definition)
    return out
