"""Regularization: dropout, locked (variational) dropout, drop path (stochastic depth).

Formula: seed 002 "Dropout and Regularization" (and "Parameters, Training, and Generalization"):
during training each element is zeroed independently with probability p and the survivors
are scaled by 1/(1 − p), so the expectation is unchanged; at evaluation dropout is the
identity. Seed 000 "Variants of CNNs" (AlexNet introduced dropout).
"""

from __future__ import annotations

from typing import Any

from ..registry import InferCtx, Param, op, p_int
from ..types import TensorType


def _probability_check(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return [("", f"expected a probability in [0, 1), got {value!r}")]
    if not 0 <= value < 1:
        return [("", f"must be in [0, 1), got {value}" + (" (p = 1 would zero everything)" if value == 1 else ""))]
    return []


def p_probability(doc: str, default: Any = 0.0) -> Param:
    """A drop probability in [0, 1)."""
    return Param("custom", doc, default, schema={"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                 check=_probability_check)


@op("dropout", family="regularization", params={"p": p_probability("probability of zeroing each element", 0.5)},
    example={"in": "x", "p": 0.1})
def dropout(ctx: InferCtx) -> TensorType:
    """Dropout: during training y = x·m/(1 − p) with m ~ Bernoulli(1 − p) per element; identity at evaluation (seed 002, "Dropout and Regularization").

    Same shape and dtype as the input. No learnable parameters.
    """
    ctx.need_float(ctx.x)
    return ctx.x


@op("locked_dropout", family="regularization", params={
    "p": p_probability("probability of zeroing each feature", 0.5),
    "dim": p_int("the dim along which one mask is shared (1 = time for [batch, time, features])", 1, min=None),
}, example={"in": "embed", "p": 0.4, "dim": 1})
def locked_dropout(ctx: InferCtx) -> TensorType:
    """Locked (variational) dropout: one mask per sequence, the same at every time step (Gal & Ghahramani 2016; AWD-LSTM, seed 000 "Empirical Understandings").

    While training y = x·m/(1 − p) with m ~ Bernoulli(1 − p) of x's shape but size 1 along ``dim``
    (broadcast over it); identity at evaluation. Same shape and dtype as the input. No learnable parameters.
    """
    x = ctx.x
    ctx.need_float(x)
    dim = ctx.params["dim"]
    if not -x.rank <= dim < x.rank:
        ctx.fail(f"dim {dim} is out of range for an input of rank {x.rank}: expected -{x.rank}..{x.rank - 1}",
                 "for [batch, time, features] sequences the time dim is 1", "dim")
    return x


@op("drop_path", family="regularization", params={"p": p_probability("probability of dropping a sample's whole path", 0.1)},
    example={"in": "branch", "p": 0.1})
def drop_path(ctx: InferCtx) -> TensorType:
    """Drop path (stochastic depth; Huang et al. 2016, as in ConvNeXt and Swin): while training each *sample* of the
    batch keeps its whole input with probability 1 − p, y_b = x_b·m_b/(1 − p) with m_b ~ Bernoulli(1 − p) — one
    draw per sample, broadcast over every other dim; identity at evaluation.

    Put on a residual branch before the add (``add: [x, drop_path(branch)]``), it drops that block for some
    samples. Same shape and dtype as the input (dim 0 is the batch). No learnable parameters.
    """
    ctx.need_float(ctx.x)
    if ctx.x.rank < 1:
        ctx.fail("drop_path needs a batch dim (dim 0); the input is a scalar", "apply it to a [batch, ...] tensor")
    return ctx.x
