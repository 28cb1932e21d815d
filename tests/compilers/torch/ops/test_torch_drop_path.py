"""drop_path (stochastic depth) compiled to torch against the formula of Huang et al. 2016 written here: while
training, sample b keeps its whole input with probability 1 - p (y_b = x_b·m_b/(1 - p), m_b ~ Bernoulli(1 - p),
one draw per sample); identity at evaluation, so the ONNX export (an inference graph) is the identity too."""

from __future__ import annotations

import numpy as np
import torch

NODES = ["{name: branch, op: linear, in: x, out: 6}", "{name: n, op: drop_path, in: branch, p: 0.25}"]
INPUTS = "x: {shape: [batch, 5, 6], dtype: float32}"


def test_training_drops_whole_samples_with_the_seed_formula(run_op):
    model, _ = run_op(NODES, INPUTS)
    model.train()
    x = torch.randn(64, 5, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(7)
    got = model(x=x)
    with torch.no_grad():
        branch = model.branch(x)
    torch.manual_seed(7)
    m = torch.empty(64, 1, 1).bernoulli_(0.75)  # one draw per sample, the same RNG stream
    want = branch * m / 0.75
    assert torch.allclose(got, want, atol=1e-6, rtol=0)
    kept = (got.abs().flatten(1).amax(1) > 0)
    assert torch.equal(kept, m.flatten().bool())  # each sample is all kept or all dropped
    assert torch.allclose(got[kept], branch[kept] / 0.75, atol=1e-6, rtol=0)
    assert 0 < int(kept.sum()) < 64


def test_evaluation_is_the_identity_in_torch_and_onnx_runtime(run_op, onnx_check):
    model, graph = run_op(NODES, INPUTS)
    model.eval()
    x = np.random.default_rng(0).standard_normal((3, 5, 6)).astype(np.float32)
    with torch.no_grad():
        got = model(x=torch.from_numpy(x))
        want = model.branch(torch.from_numpy(x))
    assert torch.equal(got, want)
    assert onnx_check(model, graph, {"x": x}) <= 1e-5


def test_p_zero_is_the_identity_while_training(run_op):
    model, _ = run_op(["{name: n, op: drop_path, in: x, p: 0}"], INPUTS)
    model.train()
    x = torch.randn(4, 5, 6)
    assert torch.equal(model(x=x), x)
