"""The identity that stands for a block use with ``repeat: 0``.

EfficientNet's compound scaling (seed 000, "Variants of CNNs") rounds each stage's depth
d·n to an integer, which can be 0 for a small depth multiplier: the stage then vanishes and its
input passes through unchanged. The expander writes such a block use as one ``skipped_block``
node (named like the block use) over the block's inputs; its shape rule infers the block once
on those inputs and refuses the identity when the block would change its first input's shape
or dtype (then "no copies" cannot mean "pass the input through").
"""

from __future__ import annotations

from ..registry import InferCtx, Param, op
from ..types import TensorType, dims_equal, format_shape
from ._blockfn import block_param, declare_functions, infer_function


def _check_names(value: object) -> list[tuple[str, str]]:
    if isinstance(value, list) and value and all(isinstance(v, str) and v.isidentifier() for v in value):
        return []
    return [("", f"expected a non-empty list of block input names, got {value!r}")]


@op("skipped_block", family="blocks", inputs=("*inputs",), params={
    "block": block_param("the block whose use has repeat: 0 (checked, not run)"),
    "bound": Param("custom", "the block's input names, in the order of this node's inputs (the first is passed through)",
                   schema={"type": "array", "items": {"type": "string"}, "minItems": 1}, check=_check_names),
}, internal=True,  # made by the expander; a spec cannot write it (a node with op and block is refused)
    shape_hint="a block use with repeat: 0 is the identity on its first input")
def skipped_block(ctx: InferCtx) -> TensorType:
    """Identity on the first input, in place of a block used ``repeat: 0`` times (seed 000, "Variants of CNNs": depth scaling).

    out = inputs[0]. The block is inferred on the node's inputs (named by ``bound``) and its
    first output must have the first input's shape and dtype. params: none.
    """
    names, types = ctx.params["bound"], ctx.variadic
    if len(names) != len(types):
        ctx.fail(f"expected {len(names)} inputs (one per name in bound), got {len(types)}", None, "bound")
    block = str(ctx.params["block"])
    outs = infer_function(ctx, "block", dict(zip(names, types)), "repeat: 0")
    x, out = types[0], next(iter(outs.values()))
    same = (x.rank == out.rank and x.dtype == out.dtype
            and all(dims_equal(a, b) is not False for a, b in zip(x.shape, out.shape)))
    if not same:
        ctx.fail(f"repeat: 0 makes this block use the identity on its first input '{names[0]}', which needs block "
                 f"'{block}' to keep that shape: expected {format_shape(x.shape)} {x.dtype} (the input), "
                 f"got {format_shape(out.shape)} {out.dtype} (the block's output)",
                 "the identity is only right for a block that keeps its input's shape; use repeat >= 1 here")
    return x


declare_functions(skipped_block, block=None)
