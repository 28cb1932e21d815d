"""Torch implementation of dropout (nngraph/ops/regularization.py; seed 002, "Dropout and Regularization").

``F.dropout(x, p=0.1, training=self.training)``: active in ``model.train()``
mode, the identity after ``model.eval()``; no state.

``locked_dropout`` (variational dropout, Gal & Ghahramani 2016; AWD-LSTM): one mask per sequence, shared along
``dim``. :func:`shared_masks` / :func:`sample_mask` let a ``recur`` loop draw each DropConnect mask of its
cell (``weight_drop`` on the recurrent cells) once per forward pass instead of once per step.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..registry import Emit, NodeCtx, torch_op


@torch_op("dropout")
def dropout(ctx: NodeCtx, e: Emit) -> str:
    """Inverted dropout, following the model's training flag."""
    return f"F.dropout({e.x}, p={ctx.params['p']!r}, training=self.training)"


# ----- masks shared by the steps of a loop (locked dropout, DropConnect) -----------------------
def sample_mask(module: nn.Module, key: str, like: torch.Tensor, p: float, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """A dropout mask m/(1 − p), m ~ Bernoulli(1 − p), of ``shape`` (default ``like``'s).

    Inside :func:`shared_masks` (a ``recur`` loop) the mask of (``module``, ``key``) is drawn once and
    reused by every step of that forward pass (AWD-LSTM's DropConnect); elsewhere a new one per call.
    """
    shape = tuple(like.shape) if shape is None else shape
    cache = getattr(module, "_nng_masks", None)
    if cache is not None:
        mask = cache.get(key)
        if mask is not None and tuple(mask.shape) == shape:
            return mask
    mask = like.new_empty(shape).bernoulli_(1 - p) / (1 - p)
    if cache is not None:
        cache[key] = mask
    return mask


@contextlib.contextmanager
def shared_masks(root: nn.Module) -> Iterator[None]:
    """Within the block, every module under ``root`` draws each of its dropout masks once (see :func:`sample_mask`).

    Nested loops keep the outermost loop's masks (one per forward pass of the outer loop).
    """
    mods = [m for m in root.modules() if getattr(m, "_nng_masks", None) is None]
    for m in mods:
        m._nng_masks = {}
    try:
        yield
    finally:
        for m in mods:
            m._nng_masks = None


def locked_dropout(x: torch.Tensor, p: float, dim: int, training: bool) -> torch.Tensor:
    """Variational dropout: one Bernoulli mask of x's shape with size 1 along ``dim``, broadcast over it."""
    if not training or p == 0:
        return x
    shape = list(x.shape)
    shape[dim] = 1
    return x * x.new_empty(shape).bernoulli_(1 - p) / (1 - p)


@torch_op("locked_dropout")
def locked_dropout_(ctx: NodeCtx, e: Emit) -> str:
    """``nng.ops.regularization.locked_dropout(x, p, dim, self.training)``: one mask per sequence (AWD-LSTM's dropouti/dropouth/dropout)."""
    return f"nng.ops.regularization.locked_dropout({e.x}, {ctx.params['p']!r}, {ctx.params['dim']!r}, self.training)"


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: one Bernoulli(1 − p) draw per sample (dim 0), the survivors scaled by 1/(1 − p)."""
    if not training or p == 0:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - p)  # [B, 1, ..., 1]
    return x * keep / (1 - p)


@torch_op("drop_path")
def drop_path_(ctx: NodeCtx, e: Emit) -> str:
    """``nng.ops.regularization.drop_path(x, p, self.training)``: a whole sample's branch dropped (stochastic depth)."""
    return f"nng.ops.regularization.drop_path({e.x}, {ctx.params['p']!r}, self.training)"
