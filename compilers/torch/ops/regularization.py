"""Torch implementation of dropout (nngraph/ops/regularization.py; seed 002, "Dropout and Regularization").

``F.dropout(x, p=0.1, training=self.training)``: active in ``model.train()``
mode, the identity after ``model.eval()``; no state.
"""

from __future__ import annotations

from ..registry import Emit, NodeCtx, torch_op


@torch_op("dropout")
def dropout(ctx: NodeCtx, e: Emit) -> str:
    """Inverted dropout, following the model's training flag."""
    return f"F.dropout({e.x}, p={ctx.params['p']!r}, training=self.training)"
