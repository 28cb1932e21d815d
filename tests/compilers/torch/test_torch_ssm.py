"""Torch selective SSM (mamba): the sequential and chunked scans against a closed-form oracle and each other
(values and gradients), the whole block against its formula, causality, init, and the mamba_style zoo spec."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nngraph.compilers.torch import build_module, load_spec
from nngraph.compilers.torch.ops.ssm import Mamba, selective_scan_chunked, selective_scan_sequential

ROOT = Path(__file__).resolve().parents[3]
X = "x: {shape: [batch, seq, 16], dtype: float32}"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scan_inputs(b=2, t=37, d=6, n=4, seed=0, requires_grad=False):
    g = _gen(seed)
    u = torch.randn(b, t, d, generator=g)
    delta = F.softplus(torch.randn(b, t, d, generator=g))
    A = -torch.exp(torch.randn(d, n, generator=g))
    B, C = torch.randn(b, t, n, generator=g), torch.randn(b, t, n, generator=g)
    D = torch.randn(d, generator=g)
    return [v.requires_grad_(requires_grad) for v in (u, delta, A, B, C, D)]


def closed_form(u, delta, A, B, C, D):
    """h_t = Σ_{s≤t} exp(Σ_{s<r≤t} Δ_r A) Δ_s B_s u_s, evaluated in float64 with the full [t, s] decay matrix."""
    u, delta, A, B, C, D = (v.double() for v in (u, delta, A, B, C, D))
    S = torch.cumsum(delta.unsqueeze(-1) * A, dim=1)  # [b, T, d, N]
    T = u.shape[1]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    diff = S.unsqueeze(2) - S.unsqueeze(1)  # [b, t, s, d, N] = S_t - S_s
    decay = torch.where(causal[None, :, :, None, None], torch.exp(diff.clamp(max=0)), torch.zeros(()).double())
    inp = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # [b, s, d, N]
    h = (decay * inp.unsqueeze(1)).sum(2)  # [b, t, d, N]
    return (h * C.unsqueeze(2)).sum(-1) + u * D


def test_sequential_scan_equals_the_closed_form():
    args = scan_inputs(t=23)
    assert (selective_scan_sequential(*args).double() - closed_form(*args)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_chunked_scan_agrees_with_sequential_in_values_and_gradients(chunk):
    seq = scan_inputs(seed=1, requires_grad=True)
    chk = [v.detach().clone().requires_grad_(True) for v in seq]
    y_seq, y_chk = selective_scan_sequential(*seq), selective_scan_chunked(*chk, chunk_size=chunk)
    assert (y_seq - y_chk).abs().max().item() <= 1e-5
    w = torch.randn(y_seq.shape, generator=_gen(2))
    (y_seq * w).sum().backward()
    (y_chk * w).sum().backward()
    for a, b in zip(seq, chk):
        assert (a.grad - b.grad).abs().max().item() <= 1e-5 * max(1.0, a.grad.abs().max().item())


def test_chunked_scan_is_stable_for_long_strongly_decaying_sequences():
    u, delta, A, B, C, D = scan_inputs(t=300, seed=3)
    delta = delta * 20  # exp(Δ A) down to ~e^-200 per step: a cumulative-sum formulation would overflow
    y_seq = selective_scan_sequential(u, delta, A, B, C, D)
    y_chk = selective_scan_chunked(u, delta, A, B, C, D, chunk_size=128)
    assert torch.isfinite(y_chk).all() and (y_seq - y_chk).abs().max().item() <= 1e-4


@pytest.mark.parametrize("scan", ["sequential", "chunked"])
def test_mamba_block_equals_its_formula(run_op, scan):
    extra = ", chunk_size: 8" if scan == "chunked" else ""
    model, graph = run_op(f"{{name: n, op: mamba, in: x, d_state: 4, d_conv: 3, expand: 2, scan: {scan}{extra}}}", X)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    m = model.n
    x = torch.randn(2, 19, 16, generator=_gen(4))
    uz = x @ m.in_proj.weight.T
    u, z = uz[..., :32], uz[..., 32:]
    conv = torch.zeros_like(u)
    w = m.conv1d.weight[:, 0, :]  # [32, 3]; causal: out_t = Σ_k w_k · u_{t-2+k}
    for k in range(3):
        shift = 2 - k
        conv[:, shift:] += w[:, k] * u[:, :19 - shift]
    u = F.silu(conv + m.conv1d.bias)
    dbc = u @ m.x_proj.weight.T
    delta = F.softplus(dbc[..., :1] @ m.dt_proj.weight.T + m.dt_proj.bias)
    y = closed_form(u, delta, -torch.exp(m.A_log), dbc[..., 1:5], dbc[..., 5:9], m.D).float()
    want = (y * F.silu(z)) @ m.out_proj.weight.T
    assert (model(x) - want).abs().max().item() <= 1e-5


def test_mamba_is_causal_and_selective(run_op):
    model, _ = run_op("{name: n, op: mamba, in: x, d_state: 8}", X)
    x = torch.randn(1, 12, 16, generator=_gen(5))
    y = model(x)
    x2 = x.clone()
    x2[:, 7] += 1.0
    y2 = model(x2)
    assert torch.equal(y[:, :7], y2[:, :7]) and not torch.allclose(y[:, 7:], y2[:, 7:])
    u, z, delta, A, B, C = model.n.ssm_inputs(x)
    assert delta.shape == (1, 12, 32) and B.shape == (1, 12, 8) and C.shape == (1, 12, 8)
    assert delta.std(dim=1).min() > 0 and B.std(dim=1).min() > 0  # Δ and B change along the sequence


def test_mamba_init_follows_mamba_ssm(run_op):
    model, _ = run_op("{name: n, op: mamba, in: x, d_state: 4}", X)
    m = model.n
    assert torch.equal(m.A_log, torch.log(torch.arange(1.0, 5.0)).repeat(32, 1))
    assert torch.equal(m.D, torch.ones(32))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-3 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert m.dt_proj.weight.abs().max() <= 1.0  # U(±r^-1/2) with r = ceil(16/16) = 1


def test_mamba_style_spec_trains_with_either_scan():
    graph = load_spec(ROOT / "specs" / "mamba_style.yaml", ["layers=2"])
    seq = build_module(graph, seed=0)
    assert sum(p.numel() for p in seq.parameters()) == graph.total_params
    tokens = torch.randint(0, 1024, (2, 20), generator=_gen(6))
    logits = seq(tokens)
    assert logits.shape == (2, 20, 1024)
    F.cross_entropy(logits.reshape(-1, 1024), tokens.reshape(-1)).backward()
    assert all(p.grad is not None for p in seq.parameters())
    chk = build_module(graph, seed=0)
    mixers = [m for m in chk.modules() if isinstance(m, Mamba)]
    assert len(mixers) == 2
    for m in mixers:
        m.scan, m.chunk_size = "chunked", 8
    assert (chk(tokens) - logits).abs().max().item() <= 1e-4
    assert math.isfinite(logits.sum().item())
