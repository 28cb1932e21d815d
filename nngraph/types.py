"""Tensor types for shape inference: symbolic dims and dtypes.

A dim is an ``int`` or a symbolic expression such as ``"batch"`` or ``"seq*2"``,
always in the canonical form of :mod:`nngraph.symdim` (so equal expressions are
equal strings). Comparing two dims answers True, False, or None when it cannot be
decided under the spec's declared dim facts (``height`` vs ``width``); a shape rule
that has to assume an undecidable pair equal records it, and validate warns.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterable, Iterator, Union

from . import symdim

Dim = Union[int, str]

FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
INT_DTYPES = ("int64", "int32", "int8", "uint8")
DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "int8": 1,
               "uint8": 1, "bool": 1}

def is_float(dtype: str) -> bool:
    """True for floating-point dtypes."""
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    """True for integer dtypes (bool excluded)."""
    return dtype in INT_DTYPES


def _canon(p: symdim.Poly) -> Dim:
    return p.const if p.const is not None else symdim.to_str(p)


def dim_mul(a: Dim, b: Dim) -> Dim:
    """a * b in canonical form (an int when neither side is symbolic)."""
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    return _canon(symdim.parse(a) * symdim.parse(b))


def dim_add(a: Dim, b: Dim) -> Dim:
    """a + b in canonical form (``time+1-1`` is ``time``)."""
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return _canon(symdim.parse(a) + symdim.parse(b))


def dim_floordiv(a: Dim, b: Dim) -> Dim:
    """a // b in canonical form (``(batch*4)//2`` is ``batch*2``)."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return _canon(symdim.floordiv(symdim.parse(a), symdim.parse(b)))


def dim_mod(a: Dim, b: Dim) -> Dim:
    """a % b in canonical form (``(seq*4+1) % 4`` is ``1``)."""
    if isinstance(a, int) and isinstance(b, int):
        return a % b
    return _canon(symdim.mod(symdim.parse(a), symdim.parse(b)))


def dim_prod(dims: Iterable[Dim]) -> Dim:
    """Product of dims (1 for none)."""
    out: Dim = 1
    for d in dims:
        out = dim_mul(out, d)
    return out


# The declared facts of the graph being inferred, and the dim pairs a rule had to assume equal without proof;
# set by nngraph.infer for one graph / one node (a context, so nested or threaded inference stays separate).
_FACTS: ContextVar[symdim.Facts] = ContextVar("dim_facts", default=symdim.Facts())
_ASSUMED: ContextVar[list | None] = ContextVar("dims_assumed", default=None)


def dims_equal(a: Dim, b: Dim) -> bool | None:
    """True/False when decidable under the declared dim facts; None when the symbols may or may not match."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if a == b:
        return True
    return symdim.compare(a, b, _FACTS.get())


def dims_differ(a: Dim, b: Dim) -> bool:
    """True when ``a != b`` is proved; an undecidable pair is assumed equal and recorded for a warning."""
    eq = dims_equal(a, b)
    if eq is None:
        _doubt(("equal",) + tuple(sorted((a, b), key=str)))
    return eq is False


def _doubt(entry: tuple) -> None:
    assumed = _ASSUMED.get()
    if assumed is not None and entry not in assumed:
        assumed.append(entry)


def doubt_size(d: Dim) -> None:
    """Record a dim that must be >= 1 (a conv window's output, a patch grid) when the facts do not prove it."""
    if isinstance(d, str) and dim_least(d) < 1:
        _doubt(("size", d))


def dim_least(d: Dim) -> float:
    """A lower bound of a dim under the declared facts (``-inf`` when none is known)."""
    return d if isinstance(d, int) else symdim.least(d, _FACTS.get())


def broadcast_dim(a: Dim, b: Dim) -> Dim | None:
    """NumPy broadcasting of one dim pair; None when they provably cannot broadcast (undecidable: assumed equal)."""
    if a == 1:
        return b
    if b == 1:
        return a
    if dims_differ(a, b):
        return None
    return a if isinstance(a, int) or not isinstance(b, int) else b


@dataclass(frozen=True)
class TensorType:
    """Shape (tuple of dims) and dtype of one tensor value in the graph."""

    shape: tuple[Dim, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        """Number of dims."""
        return len(self.shape)

    def with_shape(self, shape: Iterable[Dim]) -> "TensorType":
        """Same dtype, new shape."""
        return TensorType(tuple(shape), self.dtype)

    def with_last(self, dim: Dim) -> "TensorType":
        """Same tensor with its last dim replaced."""
        return TensorType(self.shape[:-1] + (dim,), self.dtype)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"


def format_shape(shape: Iterable[Dim]) -> str:
    """``[batch, 3, 32, 32]``."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


@contextmanager
def dim_facts(facts: symdim.Facts) -> Iterator[None]:
    """Decide dim comparisons under a graph's declared facts while inside the ``with``."""
    token = _FACTS.set(facts)
    try:
        yield
    finally:
        _FACTS.reset(token)


@contextmanager
def assumed_equal() -> Iterator[list[tuple]]:
    """Collect what shape rules assume without proof inside the ``with``: ``("equal", a, b)`` for an undecidable
    pair taken as equal, ``("size", d)`` for a dim taken as >= 1 (see :func:`doubt_size`); an enclosing
    collection (a node whose rule infers a block, e.g. ``recur``'s cell) receives them too."""
    found: list[tuple] = []
    outer = _ASSUMED.get()
    token = _ASSUMED.set(found)
    try:
        yield found
    finally:
        _ASSUMED.reset(token)
        if outer is not None:
            outer.extend(p for p in found if p not in outer)
