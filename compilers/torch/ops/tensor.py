"""Torch implementations of the tensor/structure ops (nngraph/ops/tensor.py).

Each is one expression in the generated forward, e.g. ``a + b``,
``torch.matmul(q, k.transpose(-2, -1)) * 0.125``, ``torch.cat([a, b], dim=-1)``,
``torch.split(qkv, [64, 64, 64], dim=-1)`` (unpacked into ``qkv_q, qkv_k, qkv_v``),
``x.reshape(x.shape[0], x.shape[1], 8, 64)``. Only ``parameter`` has learnable
state (an ``nn.Parameter`` at the node's name, initialized normal(0, 0.02) as
its nngraph docstring says); ``constant`` is a non-persistent buffer, so it
follows ``.to(device)`` and stays out of the state dict.
"""

from __future__ import annotations

import torch
from torch import nn

from nngraph.types import format_shape

from ..registry import Emit, NodeCtx, torch_op

_DTYPES = {"float32": "torch.float32", "float16": "torch.float16", "bfloat16": "torch.bfloat16",
           "float64": "torch.float64", "int64": "torch.int64", "int32": "torch.int32", "int8": "torch.int8",
           "uint8": "torch.uint8", "bool": "torch.bool"}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for an nngraph dtype name."""
    return getattr(torch, name)


for _name, _sym in (("add", "+"), ("mul", "*"), ("sub", "-")):
    torch_op(_name)(lambda ctx, e, _sym=_sym: f" {_sym} ".join(e.all_inputs))


@torch_op("matmul")
def matmul(ctx: NodeCtx, e: Emit) -> str:
    """``a @ b`` (``a @ bᵀ`` with transpose_b), times ``scale`` unless it is 1."""
    b = f"{e.inputs['b']}.transpose(-2, -1)" if ctx.params["transpose_b"] else e.inputs["b"]
    expr = f"torch.matmul({e.inputs['a']}, {b})"
    return expr if ctx.params["scale"] == 1 else f"{expr} * {ctx.params['scale']!r}"


@torch_op("concat")
def concat(ctx: NodeCtx, e: Emit) -> str:
    """``torch.cat([a, b, ...], dim=d)``."""
    return f"torch.cat([{', '.join(e.all_inputs)}], dim={ctx.params['dim']})"


@torch_op("split")
def split(ctx: NodeCtx, e: Emit) -> str:
    """``torch.split(x, sizes, dim=d)``: a tuple in output order (one piece: the tensor itself)."""
    expr = f"torch.split({e.x}, {list(ctx.params['sizes'])!r}, dim={ctx.params['dim']})"
    return expr if len(ctx.params["sizes"]) > 1 else f"{expr}[0]"


@torch_op("reshape")
def reshape(ctx: NodeCtx, e: Emit) -> str:
    """``x.reshape(...)``: 0 copies ``x.shape[i]``, a symbolic name reads its size at run time, -1 stays -1."""
    target = list(ctx.params["shape"])
    dims: list[str | None] = []
    for i, d in enumerate(target):
        if isinstance(d, int):
            dims.append(f"{e.x}.shape[{i}]" if d == 0 else str(d))
        else:
            dims.append(e.dim(d))
    unknown = [i for i, d in enumerate(dims) if d is None]
    if unknown and (len(unknown) > 1 or -1 in target):
        names = ", ".join(repr(target[i]) for i in unknown)
        raise ValueError(f"reshape to {format_shape(target)}: cannot compute {names} at run time "
                         f"(not a dim of the input {format_shape(ctx.x.shape)} or of a graph input)")
    return f"{e.x}.reshape({', '.join(d if d is not None else '-1' for d in dims)})"


@torch_op("permute")
def permute(ctx: NodeCtx, e: Emit) -> str:
    """``x.permute(dims)``."""
    return f"{e.x}.permute({', '.join(str(d) for d in ctx.params['dims'])})"


@torch_op("transpose")
def transpose(ctx: NodeCtx, e: Emit) -> str:
    """``x.transpose(dim0, dim1)``."""
    return f"{e.x}.transpose({ctx.params['dim0']}, {ctx.params['dim1']})"


@torch_op("flatten")
def flatten(ctx: NodeCtx, e: Emit) -> str:
    """``torch.flatten(x, start_dim, end_dim)``."""
    end = ctx.params["end_dim"]
    return f"torch.flatten({e.x}, {ctx.params['start_dim']}{'' if end == -1 else f', {end}'})"


@torch_op("slice")
def slice_(ctx: NodeCtx, e: Emit) -> str:
    """Python slicing: ``x[:, start:end:step]`` along ``dim``."""
    axis = ctx.params["dim"] % ctx.x.rank
    start, end, step = ctx.params["start"], ctx.params["end"], ctx.params["step"]
    part = f"{start or ''}:{'' if end is None else end}{'' if step == 1 else f':{step}'}"
    return f"{e.x}[{':, ' * axis}{part}]"


@torch_op("softmax")
def softmax(ctx: NodeCtx, e: Emit) -> str:
    """``torch.softmax(x, dim=d)``."""
    return f"torch.softmax({e.x}, dim={ctx.params['dim']})"


@torch_op("log_softmax")
def log_softmax(ctx: NodeCtx, e: Emit) -> str:
    """``torch.log_softmax(x, dim=d)``."""
    return f"torch.log_softmax({e.x}, dim={ctx.params['dim']})"


@torch_op("identity")
def identity(ctx: NodeCtx, e: Emit) -> str:
    """The input itself."""
    return e.x


@torch_op("scale")
def scale(ctx: NodeCtx, e: Emit) -> str:
    """``x * factor``."""
    return f"{e.x} * {ctx.params['factor']!r}"


@torch_op("cast")
def cast(ctx: NodeCtx, e: Emit) -> str:
    """``x.to(torch.<dtype>)``."""
    return f"{e.x}.to({_DTYPES[ctx.params['dtype']]})"


def _constant(ctx: NodeCtx) -> nn.Buffer:
    value = ctx.params["value"]
    dtype = torch_dtype(ctx.params["dtype"])
    if not dtype.is_floating_point:
        value = bool(value) if dtype == torch.bool else int(value)
    return nn.Buffer(torch.full(tuple(ctx.params["shape"]), value, dtype=dtype), persistent=False)


@torch_op("constant", module=_constant)
def constant(ctx: NodeCtx, e: Emit) -> str:
    """A non-persistent buffer filled with ``value``: it moves with the model, but is not in the state dict."""
    return e.self


def _parameter(ctx: NodeCtx) -> nn.Parameter:
    return nn.Parameter(torch.empty(tuple(ctx.params["shape"]), dtype=torch_dtype(ctx.params["dtype"])))


@torch_op("parameter", module=_parameter, init={"": ("normal", {"std": 0.02})})
def parameter(ctx: NodeCtx, e: Emit) -> str:
    """A learnable tensor stored at the node's name (state_dict key ``cls_token``), normal(0, 0.02) by default."""
    return e.self
