"""Torch implementation of ``skipped_block`` (nngraph/ops/block_skip.py): a block use with
``repeat: 0`` is the identity on its first input (seed 000, "Variants of CNNs": a depth-scaled
stage with 0 blocks). No state; the forward line is ``name = x``.
"""

from __future__ import annotations

from ..registry import Emit, NodeCtx, torch_op


@torch_op("skipped_block")
def skipped_block(ctx: NodeCtx, e: Emit) -> str:
    """The first input, unchanged."""
    return e.variadic[0]
