"""Torch implementation of the Kalman filter layer (nngraph/ops/state_space.py).

``kalman_filter`` -- :class:`KalmanFilter` (seed 000, "State Space Models (SSMs)": x_t = A x_{t−1} +
B u_t + w_t, y_t = C x_t + D u_t + v_t, and the predict–update cycle; A is ``F``, C is ``H``).
The forward line is ``kf_mean, kf_cov, kf_log_likelihood, kf_nll = self.kf(y, u, mask)``.

Per step t (batched over B; x₀ ~ N(m₀, P₀))::

    predict   x⁻ = F x + B u_t                      P⁻ = F P Fᵀ + Q
    innovate  e = y_t − (H x⁻ + D u_t)              S = H P⁻ Hᵀ + R   (symmetrized)
    gain      K = P⁻ Hᵀ S⁻¹                          (Cholesky solve: S = L_S L_Sᵀ)
    update    x = x⁻ + K e                          P = (I − K H) P⁻  (symmetrized)
    log N(e; 0, S) = −½ (m log 2π + 2 Σ log diag L_S + eᵀ S⁻¹ e)

A step with mask 0 keeps the prediction and adds nothing to the log-likelihood. The recursion
runs in y's dtype (``model.double()`` with float64 observations gives a float64 filter).

Covariances are L Lᵀ with L = diag(softplus(``*_diag``)) + the strictly lower triangle filled
row-major from ``*_lower`` (``covariance: full``; diagonal: no ``*_lower``), so they stay positive
definite whatever the optimizer does. State: ``F [n, n]``, ``H [m, n]``, ``B [n, c]``, ``D [m, c]``,
``Q_diag``, ``Q_lower``, ``R_diag``, ``R_lower``, ``m0``, ``P0_diag``, ``P0_lower``; names listed in
``fixed`` are (persistent) buffers instead of parameters. Init: F = I, H = I_{m×n} (identity on the
first min(m, n) coordinates), B = D = 0, m₀ = 0, every covariance I (``*_diag`` = softplus⁻¹(1),
``*_lower`` = 0).

No ONNX lowering: the recursion is a Python loop over the (dynamic) sequence and uses Cholesky
factorizations, which the TorchScript exporter cannot express.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Emit, NodeCtx, torch_op

_SOFTPLUS_INV_1 = math.log(math.e - 1.0)  # softplus(x) = 1


def cholesky_factor(diag: torch.Tensor, lower: torch.Tensor | None) -> torch.Tensor:
    """L = diag(softplus(diag)) + strictly-lower(lower, row-major): a lower-triangular matrix with positive diagonal."""
    n = diag.shape[0]
    factor = torch.diag_embed(F.softplus(diag))
    if lower is not None and lower.numel():
        rows, cols = torch.tril_indices(n, n, -1, device=diag.device)
        factor = factor.index_put((rows, cols), lower)
    return factor


class KalmanFilter(nn.Module):
    """``forward(y, u=None, mask=None) -> (mean, cov, log_likelihood, nll)``; see the module doc."""

    def __init__(self, state_dim: int, obs_dim: int, control_dim: int | None = None, covariance: str = "full",
                 feedthrough: bool = True, fixed: list[str] | None = None):
        super().__init__()
        n, m, c = state_dim, obs_dim, control_dim
        self.state_dim, self.obs_dim, self.covariance = n, m, covariance
        self.fixed = tuple(fixed or ())
        self._add("F", torch.eye(n), "F")
        self._add("H", torch.eye(m, n), "H")
        if c is not None:
            self._add("B", torch.zeros(n, c), "B")
            if feedthrough:
                self._add("D", torch.zeros(m, c), "D")
        for prefix, dim, group in (("Q", n, "Q"), ("R", m, "R"), ("P0", n, "init")):
            self._add(f"{prefix}_diag", torch.full((dim,), _SOFTPLUS_INV_1), group)
            if covariance == "full":
                self._add(f"{prefix}_lower", torch.zeros(dim * (dim - 1) // 2), group)
        self._add("m0", torch.zeros(n), "init")

    def _add(self, name: str, value: torch.Tensor, group: str) -> None:
        if group in self.fixed:
            self.register_buffer(name, value)
        else:
            setattr(self, name, nn.Parameter(value))

    def _cov(self, prefix: str) -> torch.Tensor:
        factor = cholesky_factor(getattr(self, f"{prefix}_diag"), getattr(self, f"{prefix}_lower", None))
        return factor @ factor.mT

    def matrices(self) -> dict[str, torch.Tensor | None]:
        """F, H, B, D, Q, R, m0, P0 as used by the recursion (B, D None when absent)."""
        return {"F": self.F, "H": self.H, "B": getattr(self, "B", None), "D": getattr(self, "D", None),
                "Q": self._cov("Q"), "R": self._cov("R"), "m0": self.m0, "P0": self._cov("P0")}

    def forward(self, y: torch.Tensor, u: torch.Tensor | None = None, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mats = {k: (v.to(y.dtype) if v is not None else None) for k, v in self.matrices().items()}
        Fm, Hm, Bm, Dm, Q, R = (mats[k] for k in ("F", "H", "B", "D", "Q", "R"))
        batch, steps, m = y.shape
        x = mats["m0"].expand(batch, -1)
        P = mats["P0"].expand(batch, -1, -1)
        weights = torch.ones(batch, steps, dtype=y.dtype, device=y.device) if mask is None else mask.to(y.dtype)
        log_2pi = m * math.log(2 * math.pi)
        means, covs, lls = [], [], []
        for t in range(steps):
            x = x @ Fm.mT
            if u is not None and Bm is not None:
                x = x + u[:, t] @ Bm.mT
            P = Fm @ P @ Fm.mT + Q
            y_hat = x @ Hm.mT
            if u is not None and Dm is not None:
                y_hat = y_hat + u[:, t] @ Dm.mT
            S = Hm @ P @ Hm.mT + R
            S = (S + S.mT) / 2
            L = torch.linalg.cholesky(S)
            e = (y[:, t] - y_hat).unsqueeze(-1)                          # [B, m, 1]
            gain = torch.cholesky_solve(Hm @ P, L).mT                     # K = P Hᵀ S⁻¹  [B, n, m]
            w = weights[:, t]
            lls.append(-0.5 * (log_2pi + 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
                               + (e * torch.cholesky_solve(e, L)).sum((-2, -1))) * w)
            x = x + w[:, None] * (gain @ e).squeeze(-1)
            P = P - w[:, None, None] * (gain @ Hm @ P)                  # (I − K H) P⁻
            P = (P + P.mT) / 2
            means.append(x)
            covs.append(P)
        mean = torch.stack(means, dim=1) if means else y.new_zeros(batch, 0, self.state_dim)
        cov = torch.stack(covs, dim=1) if covs else y.new_zeros(batch, 0, self.state_dim, self.state_dim)
        ll = torch.stack(lls, dim=1).sum(1) if lls else y.new_zeros(batch)
        nll = -ll.sum() / weights.sum().clamp(min=1)
        return mean, cov, ll, nll

    def extra_repr(self) -> str:
        return f"state_dim={self.state_dim}, obs_dim={self.obs_dim}, covariance={self.covariance}, fixed={list(self.fixed)}"


def _module(ctx: NodeCtx) -> KalmanFilter:
    u = ctx.inputs.get("u")
    p = ctx.params
    return KalmanFilter(p["state_dim"], ctx.inputs["y"].shape[-1], u.shape[-1] if u is not None else None,
                        p["covariance"], p["feedthrough"], p["fixed"])


@torch_op("kalman_filter", module=_module)
def kalman_filter(ctx: NodeCtx, e: Emit) -> str:
    """``self.kf(y, u, mask)`` -> (mean, cov, log_likelihood, nll)."""
    return f"{e.self}({e.inputs['y']}, {e.inputs.get('u', 'None')}, {e.inputs.get('mask', 'None')})"
