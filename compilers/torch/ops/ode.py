"""Torch implementation of the ``ode`` op (nngraph/ops/ode.py): Neural ODE integration of a func block.

:class:`ODE` holds the func block as a nested generated model (``<node>.func.*``) and integrates
dh/dt = func(h[, t]) from t0 to t1:

* fixed-step ``euler`` / ``midpoint`` / ``rk4`` (classic Runge-Kutta): written out here as a plain loop of
  ``steps`` steps (the ONNX tracer unrolls it: exportable, no dynamic control flow);
* adaptive ``dopri5``: ``torchdiffeq.odeint`` (``odeint_adjoint`` with ``adjoint: true``), whose step
  count depends on the data (not exportable to ONNX).

The func block sees ``t`` as a [batch, 1] tensor filled with the current time.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..registry import Emit, NodeCtx, torch_op
from ._subgraph import function_module
from .control import block_spec, call_block

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def fixed_step(f: Field, h: torch.Tensor, t: float, dt: float, solver: str) -> torch.Tensor:
    """One step of size dt from (t, h): euler, midpoint or classic RK4."""
    tt = h.new_tensor(t)
    if solver == "euler":
        return h + dt * f(tt, h)
    if solver == "midpoint":
        return h + dt * f(tt + dt / 2, h + dt / 2 * f(tt, h))
    k1 = f(tt, h)
    k2 = f(tt + dt / 2, h + dt / 2 * k1)
    k3 = f(tt + dt / 2, h + dt / 2 * k2)
    k4 = f(tt + dt, h + dt * k3)
    return h + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def integrate_fixed(f: Field, h0: torch.Tensor, t0: float, t1: float, steps: int, solver: str,
                    save_at: list[int] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``steps`` equal steps from t0 to t1; returns h(t1) and h at the grid indices ``save_at``."""
    dt = (t1 - t0) / steps
    h, saved = h0, []
    wanted = set(save_at or ())
    for k in range(steps):
        h = fixed_step(f, h, t0 + k * dt, dt, solver)
        if k + 1 in wanted:
            saved.append(h)
    return h, saved


class _Func(nn.Module):
    """f(t, h) for torchdiffeq: the func block with t as a [batch, 1] tensor."""

    def __init__(self, owner: "ODE"):
        super().__init__()
        self.owner = [owner]  # not a submodule: the parameters stay under <node>.func.*

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.owner[0].field(t, h)


class ODE(nn.Module):
    """dh/dt = func(h[, t]) integrated from t0 to t1 (see the module docstring)."""

    def __init__(self, func: dict[str, Any], solver: str = "rk4", steps: int = 10, t0: float = 0.0, t1: float = 1.0,
                 rtol: float = 1e-5, atol: float = 1e-6, adjoint: bool = False, times: list[float] | None = None):
        super().__init__()
        self.spec = func
        self.func = function_module(func)
        self.solver, self.steps, self.t0, self.t1 = solver, steps, float(t0), float(t1)
        self.rtol, self.atol, self.adjoint = rtol, atol, adjoint
        self.times = [float(t) for t in times] if times else None

    def field(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """dh/dt at (t, h)."""
        available = {"h": h}
        if "t" in self.spec["inputs"]:
            available["t"] = t.to(h.dtype).reshape(1, 1).expand(h.shape[0], 1)
        return next(iter(call_block(self.func, self.spec, available).values()))

    def forward(self, h0: torch.Tensor) -> Any:
        if self.solver == "dopri5" and (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            raise RuntimeError("ode: dopri5 chooses its steps from the data at run time; a trace would freeze one "
                               "input's steps. Export with a fixed-step solver (euler, midpoint, rk4)")
        if self.solver == "dopri5":
            out, traj = self._adaptive(h0)
        else:
            save = [round((t - self.t0) / (self.t1 - self.t0) * self.steps) for t in self.times or ()]
            out, traj = integrate_fixed(self.field, h0, self.t0, self.t1, self.steps, self.solver, save)
            if save and save[0] == 0:
                traj = [h0] + traj
        if self.times is None:
            return out
        return out, torch.stack(traj, 1)

    def _adaptive(self, h0: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        import torchdiffeq

        times = [self.t0] + [t for t in self.times or () if t not in (self.t0, self.t1)] + [self.t1]
        grid = torch.tensor(times, dtype=h0.dtype, device=h0.device)
        solve = torchdiffeq.odeint_adjoint if self.adjoint else torchdiffeq.odeint
        extra = {"adjoint_params": tuple(self.func.parameters())} if self.adjoint else {}
        path = solve(_Func(self), h0, grid, rtol=self.rtol, atol=self.atol, method="dopri5", **extra)
        at = {t: path[i] for i, t in enumerate(times)}
        return path[-1], [at[t] for t in self.times or ()]

    def extra_repr(self) -> str:
        how = f"steps={self.steps}" if self.solver != "dopri5" else f"rtol={self.rtol}, atol={self.atol}"
        return f"func={self.spec['block']!r}, solver={self.solver}, {how}, t0={self.t0}, t1={self.t1}"


@torch_op("ode", module=lambda ctx: ODE(block_spec(ctx, "func"), ctx.params["solver"], ctx.params["steps"],
                                        ctx.params["t0"], ctx.params["t1"], ctx.params["rtol"], ctx.params["atol"],
                                        ctx.params["adjoint"], ctx.params["times"]))
def ode(ctx: NodeCtx, e: Emit) -> str:
    """``self.ode(h0)`` -> h(t1) (and the trajectory with ``times``)."""
    return f"{e.self}({e.x})"
