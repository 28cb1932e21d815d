"""Neural ODE: a block gives the derivative dh/dt = f(h, t) and the op integrates it (Chen et al. 2018).

Seed 000, "Limitations and Development": "continuous-time formulations like Neural ODEs reimagine
recurrence as the discretization of a differential equation" (Chen et al., 2018), and "Empirical
Understandings" ("employ Neural ODE layers for continuous modeling"). h(t1) = h(t0) + ∫_{t0}^{t1} f(h(t), t) dt,
solved with a fixed-step method (Euler, midpoint, classic RK4) or adaptively (Dormand-Prince 5(4)).
"""

from __future__ import annotations

from typing import Any

from ..registry import REQUIRED, InferCtx, Param, op, p_bool, p_enum, p_float, p_int
from ..types import TensorType
from ._blockfn import block_param, declare_functions, function_graph, function_params, infer_function
from .control import _same_type

FIXED = ("euler", "midpoint", "rk4")
ADAPTIVE = ("dopri5",)


def _times_check(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not value:
        return [("", f"expected a non-empty list of times, got {value!r}")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [("", f"expected numbers, got {value!r}")]
    return []


#: Bounds on the work one ode node may ask for: ``steps: 1000000000`` or a dopri5 span of 1e30 validated and
#: then never finished compiling (the forward check integrates).
MAX_STEPS = 100_000
MAX_TIME = 10_000.0


def _ode_outputs(params: dict) -> tuple[str, ...]:
    return ("out", "trajectory") if params.get("times") else ("out",)


def grid_index(t: float, t0: float, t1: float, steps: int) -> float:
    """Where time ``t`` falls on the fixed grid t0 + k·(t1 − t0)/steps, in steps (an integer when on the grid)."""
    return (t - t0) / (t1 - t0) * steps


@op("ode", family="ode", params={
    "func": block_param("the block giving dh/dt from the state h (and optionally the time t, a [batch, 1] "
                        "tensor); it must return h's shape", REQUIRED),
    "solver": p_enum("euler, midpoint, rk4 (fixed steps) or dopri5 (adaptive Dormand-Prince, torchdiffeq)",
                     FIXED + ADAPTIVE, "rk4"),
    "steps": p_int("number of equal steps from t0 to t1 (fixed-step solvers)", 10, max=MAX_STEPS),
    "t0": p_float("start time", 0.0, min=-MAX_TIME, max=MAX_TIME),
    "t1": p_float("end time (may be below t0: integrates backwards)", 1.0, min=-MAX_TIME, max=MAX_TIME),
    "rtol": p_float("relative tolerance (dopri5)", 1e-5, min=0.0),
    "atol": p_float("absolute tolerance (dopri5)", 1e-6, min=0.0),
    "adjoint": p_bool("dopri5: gradients by the adjoint method (O(1) memory in the steps; torchdiffeq odeint_adjoint)",
                      False),
    "times": Param("custom", "also output the trajectory h(t) at these times (between t0 and t1, in order; "
                   "on the step grid for fixed-step solvers) as 'trajectory' [batch, len(times), ...]", None,
                   schema={"type": "array", "items": {"type": "number"}, "minItems": 1}, check=_times_check),
}, outputs=_ode_outputs, count=lambda ctx: function_params(ctx, "func"),
    example={"in": "h0", "func": "dynamics", "solver": "dopri5", "t1": 1.0, "times": [0.25, 0.5, 1.0]},
    shape_hint="ode takes the initial state h0 [batch, ...]")
def ode(ctx: InferCtx) -> dict[str, TensorType]:
    """Integrate dh/dt = func(h[, t]) from t0 to t1: out = h(t1) (seed 000, "Limitations and Development", Neural ODEs).

    Fixed-step solvers take ``steps`` equal steps of size Δ = (t1 − t0)/steps: euler h += Δ f(h, t);
    midpoint h += Δ f(h + Δ/2 f(h, t), t + Δ/2); rk4 the classic Runge-Kutta (k1..k4, h += Δ(k1 + 2k2 + 2k3 + k4)/6).
    ``dopri5`` adapts the step to keep the local error within atol + rtol·|h| (torchdiffeq.odeint;
    ``adjoint: true`` uses odeint_adjoint). The func block takes ``h`` (the state, shape of the input) and
    optionally ``t`` ([batch, 1], the current time); it returns dh/dt with h's shape and dtype.
    With ``times`` a second output ``trajectory`` stacks h at those times: [batch, len(times), ...].
    params: the func block's own, under ``<node>.func.*``.
    """
    p = ctx.params
    h = ctx.x
    ctx.need_float(h)
    ctx.need_min_rank(h, 1, "h0")
    if p["t1"] == p["t0"]:
        ctx.fail(f"t1 must differ from t0, got both {p['t0']}", "integrate over a non-empty interval", "t1")
    times = p["times"]
    if times:
        lo, hi = min(p["t0"], p["t1"]), max(p["t0"], p["t1"])
        ordered = times == sorted(times, reverse=p["t1"] < p["t0"])
        if not ordered or len(set(times)) != len(times):
            ctx.fail(f"times must be strictly {'increasing' if p['t1'] > p['t0'] else 'decreasing'} from t0 to t1, "
                     f"got {times}", None, "times")
        for t in times:
            if not lo <= t <= hi:
                ctx.fail(f"time {t} is outside [{lo}, {hi}]", "every output time must lie between t0 and t1", "times")
            k = grid_index(t, p["t0"], p["t1"], p["steps"])
            if p["solver"] in FIXED and abs(k - round(k)) > 1e-6:
                dt = (p["t1"] - p["t0"]) / p["steps"]
                ctx.fail(f"time {t} is not on the {p['solver']} grid t0 + k·{dt:g} (steps: {p['steps']})",
                         "choose steps so that every output time is a whole number of steps from t0", "times")
    graph = function_graph(ctx, "func")
    bad = [name for name in graph.inputs if name not in ("h", "t")]
    if bad or "h" not in graph.inputs:
        ctx.fail(f"the func block must take inputs h (the state) and optionally t, '{p['func']}' takes "
                 f"{', '.join(graph.inputs)}", "rename the block's inputs to h and t", "func")
    types = {"h": h}
    if "t" in graph.inputs:
        types["t"] = TensorType((h.shape[0], 1), h.dtype)
    out = next(iter(infer_function(ctx, "func", types, "func").values()))
    if not _same_type(out, h):
        ctx.fail(f"the func block must return dh/dt with the state's shape and dtype: expected {h}, got {out}",
                 None, "func")
    result = {"out": h}
    if times:
        result["trajectory"] = h.with_shape((h.shape[0], len(times)) + h.shape[1:])
    return result


declare_functions(ode, func=("h", "t"))
