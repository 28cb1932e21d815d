"""Torch Kalman filter layer against an independent textbook recursion in float64 numpy on a simulated
linear Gaussian system (seed 000, "State Space Models (SSMs)"), missing observations, positive-definite
covariances, gradients, and maximum-likelihood training of the noise covariances through the ``nll`` output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nngraph.compilers.torch import build_module, load_spec
from nngraph.compilers.torch.ops.state_space import cholesky_factor

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT / "specs" / "seeds" / "kalman_filter.yaml"


def simulate(A, B, C, D, Q, R, m0, P0, u, rng):
    """x_0 ~ N(m0, P0); x_t = A x_{t-1} + B u_t + w_t, y_t = C x_t + D u_t + v_t (one sequence per batch row)."""
    batch, steps, _ = u.shape
    ys = np.zeros((batch, steps, C.shape[0]))
    for b in range(batch):
        x = rng.multivariate_normal(m0, P0)
        for t in range(steps):
            x = A @ x + B @ u[b, t] + rng.multivariate_normal(np.zeros(len(m0)), Q)
            ys[b, t] = C @ x + D @ u[b, t] + rng.multivariate_normal(np.zeros(C.shape[0]), R)
    return ys


def textbook_kalman(y, u, mask, A, B, C, D, Q, R, m0, P0):
    """The seed's predict-update cycle, written out with explicit inverses (float64), plus the innovation log-likelihood."""
    batch, steps, m = y.shape
    n = len(m0)
    means, covs, lls = np.zeros((batch, steps, n)), np.zeros((batch, steps, n, n)), np.zeros(batch)
    for b in range(batch):
        x, P = m0.copy(), P0.copy()
        for t in range(steps):
            x_pred = A @ x + B @ u[b, t]
            P_pred = A @ P @ A.T + Q
            if mask[b, t]:
                S = C @ P_pred @ C.T + R
                K = P_pred @ C.T @ np.linalg.inv(S)
                e = y[b, t] - (C @ x_pred + D @ u[b, t])
                x = x_pred + K @ e
                P = (np.eye(n) - K @ C) @ P_pred
                lls[b] += -0.5 * (m * np.log(2 * np.pi) + np.log(np.linalg.det(S)) + e @ np.linalg.inv(S) @ e)
            else:
                x, P = x_pred, P_pred
            means[b, t], covs[b, t] = x, P
    return means, covs, lls


def _spd(rng, k):
    a = rng.normal(size=(k, k))
    return a @ a.T / k + 0.3 * np.eye(k)


def _set_from(model, A, B, C, D, Q, R, m0, P0):
    """Write a chosen system into the layer's parameters (covariances through their Cholesky factors)."""
    kf = model.kf

    def chol(name, cov):
        L = np.linalg.cholesky(cov)
        diag = np.diag(L)
        getattr(kf, f"{name}_diag").copy_(torch.from_numpy(np.log(np.expm1(diag))))
        rows, cols = np.tril_indices(len(cov), -1)
        getattr(kf, f"{name}_lower").copy_(torch.from_numpy(L[rows, cols]))

    with torch.no_grad():
        for name, value in (("F", A), ("H", C), ("B", B), ("D", D), ("m0", m0)):
            getattr(kf, name).copy_(torch.from_numpy(value))
        chol("Q", Q), chol("R", R), chol("P0", P0)


@pytest.fixture
def system():
    rng = np.random.default_rng(0)
    n, m, c = 4, 2, 2
    dt = 0.1
    A = np.eye(n) + dt * np.eye(n, k=2)                      # constant velocity: position += dt · velocity
    B = np.vstack([0.5 * dt ** 2 * np.eye(2), dt * np.eye(2)])
    C = np.hstack([np.eye(2), np.zeros((2, 2))]) + 0.05 * rng.normal(size=(m, n))
    D = 0.1 * rng.normal(size=(m, c))
    Q, R, P0 = 0.05 * _spd(rng, n), 0.5 * _spd(rng, m), _spd(rng, n)
    m0 = rng.normal(size=n)
    u = rng.normal(size=(3, 25, c))
    y = simulate(A, B, C, D, Q, R, m0, P0, u, rng)
    return dict(A=A, B=B, C=C, D=D, Q=Q, R=R, m0=m0, P0=P0), u, y


def _model():
    graph = load_spec(SPEC)
    return graph, build_module(graph, seed=0).double()


@pytest.mark.parametrize("missing", [False, True])
def test_kalman_layer_equals_the_textbook_recursion_in_float64_within_1e_6(system, missing):
    mats, u, y = system
    _, model = _model()
    _set_from(model, **mats)
    mask = np.ones(y.shape[:2])
    if missing:
        mask[0, 3:7] = 0
        mask[2, -1] = 0
        mask[1, 0] = 0
    means, covs, lls = textbook_kalman(y, u, mask, **mats)
    with torch.no_grad():
        out = model(torch.from_numpy(y), torch.from_numpy(u), torch.from_numpy(mask))
    assert out["mean"].dtype == torch.float64
    assert np.abs(out["mean"].numpy() - means).max() <= 1e-6
    assert np.abs(out["cov"].numpy() - covs).max() <= 1e-6
    assert np.abs(out["log_likelihood"].numpy() - lls).max() <= 1e-6
    assert abs(out["nll"].item() + lls.sum() / mask.sum()) <= 1e-6


def test_the_layer_covariances_are_the_chosen_ones_and_positive_definite_for_any_raw_values(system):
    mats, _, _ = system
    _, model = _model()
    _set_from(model, **mats)
    got = model.kf.matrices()
    for name in ("Q", "R", "P0"):
        assert np.abs(got[name].detach().numpy() - mats[name]).max() <= 1e-10
    gen = torch.Generator().manual_seed(1)
    L = cholesky_factor(torch.randn(5, generator=gen) * 10, torch.randn(10, generator=gen) * 10)
    assert torch.linalg.eigvalsh(L @ L.T).min() > 0
    assert torch.equal(L, torch.tril(L))


def test_float32_filter_tracks_the_float64_oracle_and_every_parameter_gets_a_gradient(system):
    mats, u, y = system
    graph, model = _model()
    _set_from(model, **mats)
    model = model.float()
    means, _, _ = textbook_kalman(y, u, np.ones(y.shape[:2]), **mats)
    out = model(torch.from_numpy(y).float(), torch.from_numpy(u).float())
    assert np.abs(out["mean"].detach().numpy() - means).max() <= 1e-3
    out["nll"].backward()
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 63
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_fixed_matrices_are_buffers_in_the_state_dict_not_parameters(compile_text):
    graph, model = compile_text("""
nngraph: 1
name: t
inputs:
  y: {shape: [batch, seq, 2], dtype: float32}
graph:
  - {name: kf, op: kalman_filter, in: y, state_dim: 3, covariance: diagonal, fixed: [F, H, init]}
outputs: {nll: kf.nll}
""")
    assert {n for n, _ in model.named_parameters()} == {"kf.Q_diag", "kf.R_diag"}
    assert {"kf.F", "kf.H", "kf.m0", "kf.P0_diag"} <= set(model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 3 + 2


def test_maximum_likelihood_training_of_the_noise_covariances_recovers_them(system):
    """Dynamics and observation model fixed at the truth, Q and R learned from the nll output alone."""
    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    mats, _, _ = system
    n, m = 4, 2
    Q_true, R_true = np.diag([0.02, 0.02, 0.2, 0.2]), np.diag([0.5, 1.5])
    u = rng.normal(size=(8, 40, 2))
    y = simulate(mats["A"], mats["B"], mats["C"], mats["D"], Q_true, R_true, mats["m0"], mats["P0"], u, rng)
    _, model = _model()
    _set_from(model, **{**mats, "Q": np.eye(n), "R": np.eye(m)})
    for name in ("F", "H", "B", "D", "m0", "P0_diag", "P0_lower", "Q_lower", "R_lower"):
        getattr(model.kf, name).requires_grad_(False)
    opt = torch.optim.Adam([model.kf.Q_diag, model.kf.R_diag], lr=0.15)
    yt, ut = torch.from_numpy(y), torch.from_numpy(u)
    first = None
    for _ in range(40):
        opt.zero_grad()
        nll = model(yt, ut)["nll"]
        first = nll.item() if first is None else first
        nll.backward()
        opt.step()
    R = model.kf.matrices()["R"].detach().numpy()
    assert nll.item() < first - 0.3
    assert np.allclose(np.diag(R), np.diag(R_true), rtol=0.25), np.diag(R)
