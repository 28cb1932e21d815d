"""Torch implementations of pooling (nngraph/ops/pool.py; seed 002, "Pooling, Hierarchical Representation,
and Normalization"). No state: each is one functional call, e.g. ``F.max_pool2d(x, 3, stride=2, padding=1)``,
``F.adaptive_avg_pool2d(x, (1, 1))``, and global pooling ``torch.mean(x, dim=(2, 3))``.
"""

from __future__ import annotations

from ..registry import Emit, NodeCtx, torch_op


def _window(ctx: NodeCtx, e: Emit) -> str:
    p = ctx.params
    args = [f"{e.x}", repr(p["kernel"] if not isinstance(p["kernel"], list) else tuple(p["kernel"]))]
    defaults = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "count_include_pad": True}
    for key, default in defaults.items():
        if key in p and p[key] != default:
            value = tuple(p[key]) if isinstance(p[key], list) else p[key]
            args.append(f"{key}={value!r}")
    return f"F.{ctx.op}({', '.join(args)})"


for _name in ("max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d"):
    torch_op(_name)(_window)


def _adaptive(ctx: NodeCtx, e: Emit) -> str:
    size = ctx.params["output_size"]
    return f"F.{ctx.op}({e.x}, {tuple(size) if isinstance(size, list) else size!r})"


for _name in ("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d"):
    torch_op(_name)(_adaptive)


def _global(ctx: NodeCtx, e: Emit) -> str:
    fn = "torch.mean" if ctx.op == "global_avg_pool" else "torch.amax"
    dims = tuple(range(2, ctx.x.rank))
    keep = ", keepdim=True" if ctx.params["keepdim"] else ""
    return f"{fn}({e.x}, dim={dims!r}{keep})"


torch_op("global_avg_pool")(_global)
torch_op("global_max_pool")(_global)
