"""Normalization compiled to torch, against the formulas in the nngraph docstrings."""

from __future__ import annotations

import pytest
import torch


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2 + 1


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() <= tol


def _perturb(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))


@pytest.mark.parametrize("shape", [(6, 4), (6, 4, 5), (6, 4, 3, 3)])
def test_batch_norm_uses_batch_statistics_in_training(run_op, shape):
    inputs = f"x: {{shape: [batch, {', '.join(str(d) for d in shape[1:])}], dtype: float32}}"
    model, graph = run_op("{name: n, op: batch_norm, in: x, eps: 0.001}", inputs)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 8
    _perturb(model)
    x = _rand(*shape)
    dims = [0] + list(range(2, len(shape)))
    view = (1, -1) + (1,) * (len(shape) - 2)
    mu, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
    w, b = model.n.weight.view(view), model.n.bias.view(view)
    _close(model.train()(x), w * (x - mu) / torch.sqrt(var + 1e-3) + b, 1e-4)
    # running statistics: (1 - momentum) * init + momentum * batch stat (unbiased variance)
    _close(model.n.running_mean, 0.1 * x.mean(dims))
    _close(model.n.running_var, 0.9 + 0.1 * x.var(dims, unbiased=True), 1e-4)
    assert list(model.state_dict()) == ["n.weight", "n.bias", "n.running_mean", "n.running_var", "n.num_batches_tracked"]


def test_batch_norm_eval_uses_running_statistics(run_op):
    model, _ = run_op("{name: n, op: batch_norm, in: x}", "x: {shape: [batch, 4, 3, 3], dtype: float32}")
    x = _rand(2, 4, 3, 3)
    _close(model.eval()(x), x / (1 + 1e-5) ** 0.5)


def test_layer_norm_formula(run_op):
    model, _ = run_op("{name: n, op: layer_norm, in: x, shape: [3, 8]}", "x: {shape: [batch, 3, 8], dtype: float32}")
    _perturb(model)
    x = _rand(2, 3, 8)
    mu, var = x.mean((1, 2), keepdim=True), x.var((1, 2), unbiased=False, keepdim=True)
    _close(model(x), model.n.weight * (x - mu) / torch.sqrt(var + 1e-5) + model.n.bias)


def test_layer_norm_without_affine_has_no_state(run_op):
    model, graph = run_op("{name: n, op: layer_norm, in: x, elementwise_affine: false}")
    x = _rand(4, 8)
    assert graph.total_params == 0 and list(model.state_dict()) == []
    _close(model(x), (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5))


def test_rms_norm_formula(run_op):
    model, graph = run_op("{name: n, op: rms_norm, in: x}")
    _perturb(model)
    x = _rand(4, 8)
    _close(model(x), model.n.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    assert graph.total_params == 8


def test_group_norm_formula(run_op):
    model, _ = run_op("{name: n, op: group_norm, in: x, groups: 2}", "x: {shape: [batch, 4, 3, 3], dtype: float32}")
    _perturb(model)
    x = _rand(2, 4, 3, 3)
    g = x.reshape(2, 2, 2 * 9)
    xhat = ((g - g.mean(-1, keepdim=True)) / torch.sqrt(g.var(-1, unbiased=False, keepdim=True) + 1e-5)).reshape(x.shape)
    _close(model(x), model.n.weight.view(1, 4, 1, 1) * xhat + model.n.bias.view(1, 4, 1, 1))


def test_dyt_formula_and_initial_values(run_op):
    model, graph = run_op("{name: n, op: dyt, in: x, alpha_init: 0.8}")
    assert list(model.state_dict()) == ["n.alpha", "n.weight", "n.bias"]
    assert model.n.alpha.item() == pytest.approx(0.8) and graph.total_params == 17
    x = _rand(4, 8)
    _close(model(x), torch.tanh(0.8 * x))
    _perturb(model)
    _close(model(x), model.n.weight * torch.tanh(model.n.alpha * x) + model.n.bias)


def test_rms_norm_offset_one_is_gemmas_rms_norm(run_op, onnx_check):
    """offset: 1 scales by (1 + γ) with γ starting at 0: Hugging Face's GemmaRMSNorm with the same weight."""
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

    model, graph = run_op("{name: n, op: rms_norm, in: x, eps: 1.0e-6, offset: 1}",
                          "x: {shape: [batch, 5, 8], dtype: float32}")
    assert torch.equal(model.n.weight, torch.zeros(8))  # (1 + 0): a new model starts at the identity scale
    _perturb(model)
    hf = GemmaRMSNorm(8, eps=1e-6)
    hf.load_state_dict(model.n.state_dict())  # the same key: weight holds γ
    x = _rand(3, 5, 8)
    _close(model(x=x), hf(x))
    assert onnx_check(model, graph, {"x": x.numpy()}) <= 1e-4



def test_layer_norm_offset_scales_by_offset_plus_gamma_in_torch_and_onnx(run_op, onnx_check):
    """offset: 1 stores γ around 0: y = (1 + γ)·(x − μ)/√(σ² + ε) + β, written out here."""
    model, graph = run_op("{name: n, op: layer_norm, in: x, eps: 1.0e-5, offset: 1}",
                          "x: {shape: [batch, 5, 8], dtype: float32}")
    assert torch.equal(model.n.weight, torch.zeros(8)) and graph.total_params == 16
    _perturb(model)
    x = _rand(3, 5, 8)
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    _close(model(x=x), (1 + model.n.weight) * (x - mu) / torch.sqrt(var + 1e-5) + model.n.bias)
    assert onnx_check(model, graph, {"x": x.numpy()}) <= 1e-4


@pytest.mark.parametrize("dim,shape", [(-1, (2, 3, 4, 6)), (1, (2, 6, 3, 4))])
def test_layer_scale_is_a_per_channel_gamma_along_dim_in_torch_and_onnx(run_op, onnx_check, dim, shape):
    """y = γ ⊙ x with γ_c starting at init along ``dim``; HF ConvNext's layer_scale_parameter (channels last)."""
    dims = ", ".join(str(d) for d in shape[1:])
    model, graph = run_op(f"{{name: n, op: layer_scale, in: x, init_value: 1.0e-6, dim: {dim}}}",
                          f"x: {{shape: [batch, {dims}], dtype: float32}}")
    assert torch.equal(model.n, torch.full((6,), 1e-6)) and graph.total_params == 6
    _perturb(model)
    x = _rand(*shape)
    view = [1] * len(shape)
    view[dim] = 6
    _close(model(x=x), x * model.n.detach().view(view))
    assert list(model.state_dict()) == ["n"]
    assert onnx_check(model, graph, {"x": x.numpy()}) <= 1e-5

