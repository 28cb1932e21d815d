"""Linear Gaussian state space models: the Kalman filter as a layer.

Seed 000, "State Space Models (SSMs)": the canonical form
x_t = A x_{t−1} + B u_t + w_t, w_t ~ N(0, Q);  y_t = C x_t + D u_t + v_t, v_t ~ N(0, R),
and the Kalman filter's predict–update cycle
x̂_{t|t−1} = A x̂_{t−1|t−1} + B u_t,  P_{t|t−1} = A P_{t−1|t−1} Aᵀ + Q,
K_t = P_{t|t−1} Cᵀ (C P_{t|t−1} Cᵀ + R)⁻¹,  x̂_{t|t} = x̂_{t|t−1} + K_t (y_t − C x̂_{t|t−1}),
P_{t|t} = (I − K_t C) P_{t|t−1}  (Kalman, 1960).
Here A is called F (transition) and C is called H (observation), the textbook names.
"""

from __future__ import annotations

from ..registry import InferCtx, Param, op, p_bool, p_enum, p_int
from ..types import TensorType, dims_differ, format_shape, is_float

#: the matrices a kalman_filter node can hold fixed (buffers: not learned, not counted)
FIXABLE = ("F", "H", "B", "D", "Q", "R", "init")


def _check_fixed(value: object) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        return [("", f"expected a list of names from {', '.join(FIXABLE)}, got {value!r}")]
    bad = [v for v in value if v not in FIXABLE]
    if bad:
        return [("", f"unknown matrix {bad[0]!r}: expected names from {', '.join(FIXABLE)}")]
    return []


def covariance_params(dim: int, kind: str) -> int:
    """Free parameters of one dim×dim covariance L Lᵀ: the diagonal of L (diagonal) or its lower triangle (full)."""
    return dim if kind == "diagonal" else dim * (dim + 1) // 2


def _sizes(ctx: InferCtx) -> tuple[int, int, int | None]:
    """(state n, observation m, control c or None)."""
    u = ctx.inputs.get("u")
    return ctx.params["state_dim"], ctx.inputs["y"].shape[-1], (u.shape[-1] if u is not None else None)


def kalman_param_sizes(ctx: InferCtx) -> dict[str, int]:
    """Learnable and fixed matrices of the node by name (F, H, B, D, Q, R, init) -> number of values."""
    n, m, c = _sizes(ctx)
    kind = ctx.params["covariance"]
    sizes = {"F": n * n, "H": m * n, "Q": covariance_params(n, kind), "R": covariance_params(m, kind),
             "init": n + covariance_params(n, kind)}
    if c is not None:
        sizes["B"] = n * c
        if ctx.params["feedthrough"]:
            sizes["D"] = m * c
    return sizes


def _count(ctx: InferCtx) -> int:
    fixed = set(ctx.params["fixed"] or ())
    return sum(v for k, v in kalman_param_sizes(ctx).items() if k not in fixed)


@op("kalman_filter", family="state_space", inputs=("y", "u?", "mask?"), params={
    "state_dim": p_int("latent state size n"),
    "covariance": p_enum("Q, R and P₀ as L Lᵀ with L lower-triangular (full) or diagonal (diagonal); the diagonal of L "
                         "is softplus of a free parameter, so every covariance is positive definite", ("full", "diagonal"),
                         "full"),
    "feedthrough": p_bool("with controls u: the observation term D u_t (y_t = H x_t + D u_t + v_t, the seed's form)", True),
    "fixed": Param("custom", "matrices held fixed (buffers set at init or loaded, not learned, not counted): any of "
                   + ", ".join(FIXABLE) + " (init = m₀ and P₀)", None,
                   schema={"type": "array", "items": {"enum": list(FIXABLE)}}, check=_check_fixed),
}, outputs=("mean", "cov", "log_likelihood", "nll"), count=_count,
    example={"in": {"y": "observations"}, "state_dim": 4},
    shape_hint="kalman_filter takes y [batch, seq, obs_dim], optionally u [batch, seq, control_dim] and mask [batch, seq]")
def kalman_filter(ctx: InferCtx) -> dict[str, TensorType]:
    """Kalman filter over a sequence of observations: the linear Gaussian SSM's predict–update cycle (seed 000, "State Space Models (SSMs)").

    With x₀ ~ N(m₀, P₀), for t = 1..T: predict x̂⁻ = F x̂ + B u_t, P⁻ = F P Fᵀ + Q; innovation
    e_t = y_t − H x̂⁻ − D u_t, S_t = H P⁻ Hᵀ + R; gain K_t = P⁻ Hᵀ S_t⁻¹; update x̂ = x̂⁻ + K_t e_t,
    P = (I − K_t H) P⁻. A masked step (mask 0: y_t missing) keeps the prediction (x̂ = x̂⁻, P = P⁻).
    y [B, T, m] (u [B, T, c], mask [B, T]) -> mean x̂_{t|t} [B, T, n], cov P_{t|t} [B, T, n, n],
    log_likelihood [B] = Σ_t log N(e_t; 0, S_t) over observed steps, and
    nll [] = −Σ log_likelihood / (observed steps) (a training loss: maximum likelihood of F, H, Q, R, ...).
    params: F [n, n], H [m, n], B [n, c] and D [m, c] (with u; D only with feedthrough), Q_diag [n] (+ Q_lower
    [n(n−1)/2] with covariance: full), R_diag [m] (+ R_lower [m(m−1)/2]), m0 [n], P0_diag [n] (+ P0_lower);
    covariance = L Lᵀ with L = diag(softplus(*_diag)) + strictly-lower(*_lower). Names in ``fixed`` are buffers.
    """
    y = ctx.inputs["y"]
    assert y is not None
    if y.rank != 3:
        ctx.fail(f"y must be [batch, seq, obs_dim], got rank {y.rank} {format_shape(y.shape)}", ctx.op.shape_hint, "y")
    if not is_float(y.dtype):
        ctx.fail(f"y must be a floating-point tensor, got {y.dtype}", "observations are real-valued", "y")
    if not isinstance(y.shape[-1], int):
        ctx.fail(f"obs_dim (the last dim of y) must be a concrete size, got '{y.shape[-1]}'", None, "y")
    lead = y.shape[:2]
    u, mask = ctx.inputs.get("u"), ctx.inputs.get("mask")
    if u is not None:
        if u.rank != 3 or any(dims_differ(a, b) for a, b in zip(u.shape[:2], lead)):
            ctx.fail(f"u must be [batch, seq, control_dim] like y's {format_shape(lead)}, got {format_shape(u.shape)}",
                     "one control vector per observation", "u")
        if not is_float(u.dtype):
            ctx.fail(f"u must be a floating-point tensor, got {u.dtype}", "controls are real-valued", "u")
        if not isinstance(u.shape[-1], int):
            ctx.fail(f"control_dim (the last dim of u) must be a concrete size, got '{u.shape[-1]}'", None, "u")
        if u.dtype != y.dtype:
            ctx.fail(f"u has dtype {u.dtype}, y has {y.dtype}", "use the same dtype", "u")
    else:
        for name in ("B", "D"):
            if name in (ctx.params["fixed"] or ()):
                ctx.fail(f"'{name}' is in fixed but there are no controls u", f"connect u, or remove {name}", "fixed")
    if mask is not None and (mask.rank != 2 or any(dims_differ(a, b) for a, b in zip(mask.shape, lead))):
        ctx.fail(f"mask must be [batch, seq] like y's {format_shape(lead)}, got {format_shape(mask.shape)}",
                 "1 where y_t is observed, 0 where it is missing", "mask")
    if mask is not None and not (is_float(mask.dtype) or mask.dtype in ("bool", "int64", "int32")):
        ctx.fail(f"mask must be bool, integer or float, got {mask.dtype}", None, "mask")
    n = ctx.params["state_dim"]
    return {"mean": TensorType(lead + (n,), y.dtype), "cov": TensorType(lead + (n, n), y.dtype),
            "log_likelihood": TensorType(lead[:1], y.dtype), "nll": TensorType((), y.dtype)}
