"""Tensor types for shape inference: symbolic dims and dtypes.

A dim is an ``int`` or a symbolic name such as ``"batch"``; arithmetic on
symbolic dims produces readable expressions (``"seq*2"``) that stay symbolic.
Comparing two dims answers True, False, or None when it cannot be decided
(two different symbols may still be equal at run time, so that is never an
error).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Union

Dim = Union[int, str]

FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
INT_DTYPES = ("int64", "int32", "int8", "uint8")
DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "int8": 1,
               "uint8": 1, "bool": 1}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_float(dtype: str) -> bool:
    """True for floating-point dtypes."""
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    """True for integer dtypes (bool excluded)."""
    return dtype in INT_DTYPES


def _wrap(d: Dim) -> str:
    s = str(d)
    return s if isinstance(d, int) or _IDENT.match(s) or (s.startswith("(") and s.endswith(")")) else f"({s})"


def dim_mul(a: Dim, b: Dim) -> Dim:
    """a * b, symbolic when either side is."""
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if a == 1:
        return b
    if b == 1:
        return a
    return f"{_wrap(a)}*{_wrap(b)}"


def dim_add(a: Dim, b: Dim) -> Dim:
    """a + b, symbolic when either side is."""
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if b == 0:
        return a
    if a == 0:
        return b
    if isinstance(b, int) and b < 0:
        return f"{a}-{-b}"
    return f"{a}+{b}"


def dim_floordiv(a: Dim, b: Dim) -> Dim:
    """a // b, symbolic when either side is."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    if b == 1:
        return a
    return f"{_wrap(a)}//{_wrap(b)}"


def dim_prod(dims: Iterable[Dim]) -> Dim:
    """Product of dims (1 for none)."""
    out: Dim = 1
    for d in dims:
        out = dim_mul(out, d)
    return out


def dims_equal(a: Dim, b: Dim) -> bool | None:
    """True/False when decidable; None when symbolic dims may or may not match."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if a == b:
        return True
    return None


def broadcast_dim(a: Dim, b: Dim) -> Dim | None:
    """NumPy broadcasting of one dim pair; None when they cannot broadcast."""
    if a == 1:
        return b
    if b == 1:
        return a
    eq = dims_equal(a, b)
    if eq is False:
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
