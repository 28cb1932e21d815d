"""Tensor/structure ops compiled to torch, against direct torch reference calls (fp32, max abs diff <= 1e-5)."""

from __future__ import annotations

import pytest
import torch

from nngraph.compilers.torch import state_dict_for


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() <= 1e-5


AB = "a: {shape: [batch, 4, 8], dtype: float32}\nb: {shape: [8], dtype: float32}"


def test_add_mul_sub_are_variadic_and_broadcast(run_op):
    inputs = AB + "\nc: {shape: [batch, 1, 8], dtype: float32}"
    a, b, c = _rand(2, 4, 8), _rand(8, seed=1), _rand(2, 1, 8, seed=2)
    for op, ref in (("add", a + b + c), ("mul", a * b * c), ("sub", a - b - c)):
        model, _ = run_op(f"{{name: n, op: {op}, in: [a, b, c]}}", inputs)
        _close(model(a, b, c), ref)


def test_matmul_with_transpose_b_and_scale(run_op):
    inputs = "q: {shape: [batch, 3, 5, 8], dtype: float32}\nk: {shape: [batch, 3, 7, 8], dtype: float32}"
    model, _ = run_op("{name: n, op: matmul, in: [q, k], transpose_b: true, scale: 0.125}", inputs)
    q, k = _rand(2, 3, 5, 8), _rand(2, 3, 7, 8, seed=1)
    _close(model(q, k), torch.einsum("bhid,bhjd->bhij", q, k) * 0.125)
    assert "n = torch.matmul(q, k.transpose(-2, -1)) * 0.125  # [batch, 3, 5, 7]" in model.source


def test_matmul_plain_broadcasts_batch_dims(run_op):
    inputs = "a: {shape: [batch, 5, 8], dtype: float32}\nb: {shape: [8, 3], dtype: float32}"
    model, _ = run_op("{name: n, op: matmul, in: [a, b]}", inputs)
    a, b = _rand(2, 5, 8), _rand(8, 3, seed=1)
    _close(model(a, b), torch.einsum("bij,jk->bik", a, b))


def test_concat_along_dim(run_op):
    inputs = "a: {shape: [batch, 3], dtype: float32}\nb: {shape: [batch, 5], dtype: float32}"
    model, _ = run_op("{name: n, op: concat, in: [a, b], dim: 1}", inputs)
    a, b = _rand(2, 3), _rand(2, 5, seed=1)
    _close(model(a, b), torch.cat([a, b], 1))


def test_split_unpacks_named_outputs_and_refs_map_to_them(run_op):
    nodes = ["{name: qkv, op: split, in: x, sizes: [2, 2, 4], names: [q, k, v]}",
             "{name: n, op: concat, in: [qkv.v, qkv.q], dim: -1}"]
    model, _ = run_op(nodes, outputs="{n: n, k: qkv.k}")
    assert "qkv_q, qkv_k, qkv_v = torch.split(x, [2, 2, 4], dim=-1)" in model.source
    assert "n = torch.cat([qkv_v, qkv_q], dim=-1)" in model.source
    x = _rand(3, 8)
    out = model(x)
    _close(out["n"], torch.cat([x[:, 4:], x[:, :2]], -1))
    _close(out["k"], x[:, 2:4])


def test_split_into_one_piece_is_the_tensor(run_op):
    model, _ = run_op("{name: n, op: split, in: x, sizes: [8]}")
    x = _rand(3, 8)
    _close(model(x), x)


def test_reshape_keeps_dims_for_0_and_infers_minus_1(run_op):
    model, _ = run_op("{name: n, op: reshape, in: x, shape: [0, 0, 4, -1]}", "x: {shape: [batch, seq, 32], dtype: float32}")
    assert "n = x.reshape(x.shape[0], x.shape[1], 4, -1)" in model.source
    x = _rand(2, 5, 32)
    _close(model(x), x.reshape(2, 5, 4, 8))


def test_reshape_symbolic_dims_are_read_at_run_time(run_op):
    model, _ = run_op("{name: n, op: reshape, in: x, shape: [batch, seq, 4, 8]}", "x: {shape: [batch, seq, 32], dtype: float32}")
    assert "x.reshape(x.shape[0], x.shape[1], 4, 8)" in model.source
    for b, s in ((2, 5), (3, 1)):  # the same model handles any batch/seq
        x = _rand(b, s, 32)
        _close(model(x), x.view(b, s, 4, 8))


def test_reshape_symbolic_dim_from_another_graph_input(run_op):
    inputs = "x: {shape: [batch, seq, 8], dtype: float32}\ny: {shape: [batch, seq, 1], dtype: float32}"
    nodes = ["{name: f, op: flatten, in: x, start_dim: 0, end_dim: 1}",
             "{name: n, op: reshape, in: f, shape: [batch, seq, 8]}",
             "{name: m, op: mul, in: [n, y]}"]
    model, _ = run_op(nodes, inputs, outputs="[m]")
    assert "n = f.reshape(x.shape[0], x.shape[1], 8)" in model.source
    x, y = _rand(2, 3, 8), _rand(2, 3, 1, seed=1)
    _close(model(x, y), x * y)


def test_permute_transpose_flatten(run_op):
    inputs = "x: {shape: [batch, 3, 4, 5], dtype: float32}"
    x = _rand(2, 3, 4, 5)
    model, _ = run_op("{name: n, op: permute, in: x, dims: [0, 2, 3, 1]}", inputs)
    _close(model(x), x.permute(0, 2, 3, 1))
    model, _ = run_op("{name: n, op: transpose, in: x, dim0: 1, dim1: -1}", inputs)
    _close(model(x), x.transpose(1, 3))
    model, _ = run_op("{name: n, op: flatten, in: x, start_dim: 1, end_dim: 2}", inputs)
    _close(model(x), x.reshape(2, 12, 5))
    model, _ = run_op("{name: n, op: flatten, in: x}", inputs)
    _close(model(x), x.reshape(2, 60))


@pytest.mark.parametrize("params,index", [
    ("dim: 1, start: 0, end: 1", (slice(None), slice(0, 1))),
    ("dim: -1, start: 1, step: 2", (slice(None), slice(None), slice(1, None, 2))),
    ("dim: 2, start: -3, end: -1", (slice(None), slice(None), slice(-3, -1))),
])
def test_slice_matches_python_slicing(run_op, params, index):
    model, _ = run_op(f"{{name: n, op: slice, in: x, {params}}}", "x: {shape: [batch, 4, 6], dtype: float32}")
    x = _rand(2, 4, 6)
    _close(model(x), x[index])


@pytest.mark.parametrize("mode,ref", [
    ("mean", lambda x: x.mean(dim=(1, 2), keepdim=True)),
    ("sum", lambda x: x.sum(dim=(1, 2), keepdim=True)),
    ("max", lambda x: x.amax(dim=(1, 2), keepdim=True)),
    ("min", lambda x: x.amin(dim=(1, 2), keepdim=True)),
])
def test_reduce_modes_over_several_dims(run_op, mode, ref):
    model, _ = run_op(f"{{name: n, op: reduce, in: x, mode: {mode}, dim: [1, 2], keepdim: true}}",
                      "x: {shape: [batch, 4, 6], dtype: float32}")
    x = _rand(2, 4, 6)
    _close(model(x), ref(x))


def test_reduce_single_dim_drops_it(run_op):
    model, _ = run_op("{name: n, op: reduce, in: x, dim: 1}", "x: {shape: [batch, 4, 6], dtype: float32}")
    x = _rand(2, 4, 6)
    _close(model(x), x.mean(1))


def test_softmax_and_log_softmax(run_op):
    x = _rand(3, 8)
    model, _ = run_op("{name: n, op: softmax, in: x, dim: -1}")
    _close(model(x), torch.exp(x) / torch.exp(x).sum(-1, keepdim=True))
    model, _ = run_op("{name: n, op: log_softmax, in: x, dim: 0}")
    _close(model(x), x - torch.logsumexp(x, 0, keepdim=True))


def test_identity_scale_cast(run_op):
    x = _rand(3, 8)
    model, _ = run_op("{name: n, op: identity, in: x}")
    assert model(x) is x
    model, _ = run_op("{name: n, op: scale, in: x, factor: -0.5}")
    _close(model(x), -0.5 * x)
    model, _ = run_op("{name: n, op: cast, in: x, dtype: float16}")
    assert model(x).dtype == torch.float16


def test_constant_is_a_non_persistent_buffer(run_op):
    nodes = ["{name: c, op: constant, shape: [1, 8], value: 2.5}", "{name: n, op: add, in: [x, c]}"]
    model, graph = run_op(nodes)
    x = _rand(3, 8)
    _close(model(x), x + 2.5)
    assert dict(model.named_buffers())["c"].shape == (1, 8)
    assert list(model.state_dict()) == [] and graph.total_params == 0
    assert model.double().c.dtype == torch.float64  # follows the model like any buffer


def test_int_constant_keeps_its_dtype(run_op):
    model, _ = run_op("{name: n, op: constant, shape: [2], value: 3, dtype: int64}", "x: {shape: [2], dtype: float32}")
    assert torch.equal(model(torch.zeros(2)), torch.tensor([3, 3]))


def test_parameter_lives_at_the_node_name_with_normal_002_init(run_op):
    nodes = ["{name: cls, op: parameter, shape: [64, 64]}", "{name: n, op: add, in: [x, cls]}"]
    model, graph = run_op(nodes, "x: {shape: [batch, 64, 64], dtype: float32}")
    assert list(state_dict_for(model)) == ["cls"]
    assert isinstance(model.cls, torch.nn.Parameter)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 4096
    assert abs(model.cls.std().item() - 0.02) < 0.002
    assert abs(model.cls.mean().item()) < 0.002


def test_parameter_init_override(run_op):
    nodes = ["{name: cls, op: parameter, shape: [1, 8], init: zeros}", "{name: n, op: add, in: [x, cls]}"]
    model, _ = run_op(nodes)
    assert torch.equal(model.cls.detach(), torch.zeros(1, 8))
