"""Torch ode op: fixed-step solvers against the exact discrete propagators of a linear ODE and against the closed
form expm(A t) h0 (torch.linalg.matrix_exp), dopri5 within its tolerance, time-dependent fields, the adjoint
gradient, and a Neural ODE that learns a 2-D spiral with `nngraph train` (regression, MSE)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nngraph.compilers.torch import build_module, load_spec

ROOT = Path(__file__).resolve().parents[3]
QUIET = ["train.log.tensorboard=false", "train.log.plot=false"]

LINEAR = """nngraph: 1
name: t
inputs:
  h0: {shape: [batch, 2], dtype: float32}
blocks:
  field:
    inputs: [h]
    nodes:
      - {name: a, op: linear, in: h, out: 2, bias: false}
    outputs: [a]
graph:
  - {name: n, op: ode, in: h0, func: field, SOLVER, t0: 0.0, t1: 1.5, times: [0.5, 1.0, 1.5]}
outputs: {y: n.out, path: n.trajectory}
"""
A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)  # a decaying spiral


def _linear_model(compile_text, solver: str):
    _, model = compile_text(LINEAR.replace("SOLVER", solver))
    model = model.double()
    with torch.no_grad():
        model.n.func.a.weight.copy_(A)
    return model


def _series(m: torch.Tensor, order: int) -> torch.Tensor:
    out, term = torch.eye(2, dtype=m.dtype), torch.eye(2, dtype=m.dtype)
    for k in range(1, order + 1):
        term = term @ m / k
        out = out + term
    return out


H0 = torch.tensor([[1.0, 0.0], [0.3, -0.7]], dtype=torch.float64)


@pytest.mark.parametrize("solver,order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_solvers_apply_their_exact_one_step_propagator(compile_text, solver, order):
    """For dh/dt = A h one step of an order-p Runge-Kutta method is h ← (Σ_{k≤p} (ΔA)^k/k!) h."""
    steps = 30
    model = _linear_model(compile_text, f"solver: {solver}, steps: {steps}")
    out = model(H0)
    dt = 1.5 / steps
    step = _series(dt * A, order)
    want = [torch.linalg.matrix_power(step, k) @ H0.T for k in (10, 20, 30)]
    assert torch.allclose(out["y"], want[-1].T, atol=1e-12)
    assert torch.allclose(out["path"], torch.stack([w.T for w in want], 1), atol=1e-12)


@pytest.mark.parametrize("solver,steps,tol", [("euler", 3000, 2e-3), ("rk4", 90, 1e-7)])
def test_fixed_step_solutions_converge_to_the_matrix_exponential(compile_text, solver, steps, tol):
    model = _linear_model(compile_text, f"solver: {solver}, steps: {steps}")
    out = model(H0)
    exact = [(torch.linalg.matrix_exp(A * t) @ H0.T).T for t in (0.5, 1.0, 1.5)]
    assert (out["path"] - torch.stack(exact, 1)).abs().max() < tol
    assert (out["y"] - exact[-1]).abs().max() < tol


def test_dopri5_is_within_its_tolerance_of_the_matrix_exponential(compile_text):
    model = _linear_model(compile_text, "solver: dopri5, rtol: 1.0e-7, atol: 1.0e-9")
    out = model(H0)
    exact = torch.stack([(torch.linalg.matrix_exp(A * t) @ H0.T).T for t in (0.5, 1.0, 1.5)], 1)
    err = (out["path"] - exact).abs().max().item()
    assert err < 1e-6
    loose = _linear_model(compile_text, "solver: dopri5, rtol: 1.0e-3, atol: 1.0e-4")(H0)
    assert err < (loose["path"] - exact).abs().max().item() < 1e-2  # looser tolerance, larger (bounded) error


def test_the_field_sees_the_current_time(compile_text):
    """dh/dt = t: h(t1) = h0 + (t1² − t0²)/2, exact for RK4 (a polynomial of degree 1 in t)."""
    text = """nngraph: 1
name: t
inputs:
  h0: {shape: [batch, 1], dtype: float32}
blocks:
  field:
    inputs: [h, t]
    nodes:
      - {name: zero, op: scale, in: h, factor: 0.0}
      - {name: dh, op: add, in: [zero, t]}
    outputs: [dh]
graph:
  - {name: n, op: ode, in: h0, func: field, solver: rk4, steps: 4, t0: 1.0, t1: 3.0}
outputs: [n]
"""
    _, model = compile_text(text)
    h0 = torch.tensor([[0.5], [-1.0]])
    assert torch.allclose(model(h0), h0 + (9 - 1) / 2)


def test_adjoint_gradients_equal_backpropagation_through_the_solver(compile_text):
    grads = []
    for adjoint in ("false", "true"):
        model = _linear_model(compile_text, f"solver: dopri5, rtol: 1.0e-9, atol: 1.0e-10, adjoint: {adjoint}")
        h0 = H0.clone().requires_grad_(True)
        out = model(h0)
        (out["y"].square().sum() + out["path"].sum()).backward()
        grads.append((model.n.func.a.weight.grad.clone(), h0.grad.clone()))
    assert all(torch.isfinite(g).all() for pair in grads for g in pair)
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6) and torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


def _spiral(n_starts: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Points on the spiral h(t) = expm(A t) h(0), A = [[-0.1, 2], [-2, -0.1]] (h(0) = (2, 0), t in [0, 10]),
    each followed by its trajectory at t + 0.2, ..., t + 2.0: x [n, 2], y [n, 10, 2]."""
    a = A.double()
    starts = torch.linspace(0, 10, n_starts, dtype=torch.float64)
    h0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    x = torch.stack([torch.linalg.matrix_exp(a * t) @ h0 for t in starts])
    y = torch.stack([torch.stack([torch.linalg.matrix_exp(a * dt) @ p for dt in np.arange(1, 11) * 0.2]) for p in x])
    return x.float().numpy(), y.float().numpy()


def test_neural_ode_learns_a_2d_spiral_with_nngraph_train(tmp_path):
    from nngraph.compilers.train import train

    x, y = _spiral()
    np.savez(tmp_path / "spiral.npz", x=x, y=y)
    spec = ROOT / "specs" / "seeds" / "neural_ode.yaml"
    graph = load_spec(spec)
    model = build_module(graph, seed=0)
    with torch.no_grad():
        first = float(((model(torch.from_numpy(x))["trajectory"] - torch.from_numpy(y)) ** 2).mean())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small model on a shared machine: one thread is the fastest
    try:
        summary = train(spec, out=tmp_path / "run", data=str(tmp_path / "spiral.npz"), steps=300, seed=0,
                        overrides=QUIET, quiet=True)
    finally:
        torch.set_num_threads(threads)
    assert summary["task"] == "regression"
    final = summary["test"]["mse"]
    print(f"spiral trajectory MSE: {first:.4f} at initialisation -> {final:.5f} after 300 steps")
    assert final < first / 20, (first, final)
    assert math.isfinite(final)
    json.dumps(summary)  # the run summary stays plain data


def test_onnx_export_runs_the_fixed_step_solver_and_refuses_the_adaptive_one(tmp_path):
    from nngraph.compilers.onnx.export import ExportError, export_graph
    from nngraph.compilers.onnx.metadata import read_metadata

    spec = ROOT / "specs" / "seeds" / "neural_ode.yaml"
    result = export_graph(load_spec(spec), tmp_path / "rk4.onnx", spec_file=str(spec))
    assert result.verification is not None and result.verification.ok  # ORT vs torch at two batch sizes
    meta = read_metadata(tmp_path / "rk4.onnx")
    assert meta["dynamic"] == ["batch"] and "unrolled" in meta["lowering"]["ode"]
    with pytest.raises(ExportError, match="dopri5 chooses its steps from the data"):
        export_graph(load_spec(spec, ["graph.ode.solver=dopri5"]), tmp_path / "dopri5.onnx", verify=False)
