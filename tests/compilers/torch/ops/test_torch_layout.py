"""Layout ops compiled to torch against numpy (pad, roll, tile, broadcast_to, stack, squeeze, einsum; fp32,
<= 1e-5 relative to the output's scale), and their ONNX export run in ONNX Runtime (<= 1e-4 relative)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _x(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _err(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    return float(np.abs(got.astype(np.float64) - want).max() / max(1.0, np.abs(want).max()))


def _check(run_op, onnx_check, node, inputs: str, feeds: dict, want, outputs: str = "[n]") -> None:
    nodes = node if isinstance(node, list) else [node]
    model, graph = run_op(nodes, inputs, outputs)
    got = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    got = list(got.values()) if isinstance(got, dict) else [got]
    wants = want if isinstance(want, list) else [want]
    err = max(_err(g.numpy(), w) for g, w in zip(got, wants, strict=True))
    assert err <= 1e-5, err
    ort_err = onnx_check(model, graph, feeds)
    print(f"{nodes[-1]}: torch {err:.2e} ort {ort_err:.2e}")
    assert ort_err <= 1e-4


SEQ = "x: {shape: [batch, 4, seq], dtype: float32}"


@pytest.mark.parametrize("pads,mode,np_mode", [
    ([2, 0], "constant", "constant"), ([1, 3], "reflect", "reflect"), ([0, 2], "replicate", "edge")])
def test_pad_last_dim_each_mode(run_op, onnx_check, pads, mode, np_mode):
    x = _x((2, 4, 7))
    kwargs = {"constant_values": 0.5} if mode == "constant" else {}
    want = np.pad(x, [(0, 0), (0, 0), tuple(pads)], mode=np_mode, **kwargs)
    value = ", value: 0.5" if mode == "constant" else ""
    _check(run_op, onnx_check, f"{{name: n, op: pad, in: x, pads: {pads}, mode: {mode}{value}}}", SEQ, {"x": x}, want)


@pytest.mark.parametrize("mode,np_mode", [("constant", "constant"), ("reflect", "reflect"), ("replicate", "edge")])
def test_pad_two_dims_per_side(run_op, onnx_check, mode, np_mode):
    x = _x((2, 3, 5, 6))
    want = np.pad(x, [(0, 0), (0, 0), (0, 1), (2, 1)], mode=np_mode)   # pads [2, 1, 0, 1]: last dim first
    _check(run_op, onnx_check, f"{{name: n, op: pad, in: x, pads: [2, 1, 0, 1], mode: {mode}}}",
           "x: {shape: [batch, 3, h, w], dtype: float32}", {"x": x}, want)


def test_roll_several_dims(run_op, onnx_check):
    x = _x((2, 5, 6, 3))
    _check(run_op, onnx_check, "{name: n, op: roll, in: x, shifts: [-2, 3], dims: [1, 2]}",
           "x: {shape: [batch, 5, 6, 3], dtype: float32}", {"x": x}, np.roll(x, (-2, 3), axis=(1, 2)))


@pytest.mark.parametrize("reps", [[1, 2, 3], [2, 1, 1, 2], [3]])
def test_tile(run_op, onnx_check, reps):
    x = _x((2, 4, 5))
    _check(run_op, onnx_check, f"{{name: n, op: tile, in: x, reps: {reps}}}", SEQ, {"x": x}, np.tile(x, reps))


def test_expand_broadcasts_size_1_dims_and_adds_leading_ones(run_op, onnx_check):
    x = _x((1, 4, 1))
    want = np.broadcast_to(x, (2, 3, 4, 5)).copy()
    _check(run_op, onnx_check, "{name: n, op: expand, in: x, shape: [2, batch, -1, seq]}",
           "x: {shape: [1, 4, 1], dtype: float32}\ny: {shape: [batch, seq], dtype: float32}",
           {"x": x, "y": _x((3, 5))}, want)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_stack(run_op, onnx_check, dim):
    a, b, c = _x((2, 4, 5)), _x((2, 4, 5), 1), _x((2, 4, 5), 2)
    inputs = "\n".join(f"{k}: {{shape: [batch, 4, seq], dtype: float32}}" for k in "abc")
    _check(run_op, onnx_check, f"{{name: n, op: stack, in: [a, b, c], dim: {dim}}}", inputs,
           {"a": a, "b": b, "c": c}, np.stack([a, b, c], axis=dim))


def test_unstack_into_named_outputs(run_op, onnx_check):
    x = _x((2, 3, 5))
    node = "{name: n, op: unstack, in: x, dim: 1, names: [p, q, r]}"
    _check(run_op, onnx_check, node, "x: {shape: [batch, 3, seq], dtype: float32}", {"x": x},
           [x[:, 0], x[:, 1], x[:, 2]], outputs="{p: n.p, q: n.q, r: n.r}")


def test_squeeze_and_unsqueeze(run_op, onnx_check):
    x = _x((2, 1, 5, 1))
    nodes = ["{name: s, op: squeeze, in: x, dim: [1, -1]}", "{name: n, op: unsqueeze, in: s, dim: -1}"]
    _check(run_op, onnx_check, nodes, "x: {shape: [batch, 1, seq, 1], dtype: float32}", {"x": x},
           np.expand_dims(np.squeeze(x, (1, 3)), -1))


@pytest.mark.parametrize("eq,shapes", [
    ("bhid,bhjd->bhij", [(2, 3, 5, 4), (2, 3, 6, 4)]),
    ("bi,ij->bj", [(2, 4), (4, 3)]),
    ("bij->bji", [(2, 4, 3)]),
    ("bi,bj,bk->bijk", [(2, 2), (2, 3), (2, 4)]),
])
def test_einsum(run_op, onnx_check, eq, shapes):
    names = "abc"[:len(shapes)]
    arrays = [_x(s, i) for i, s in enumerate(shapes)]
    terms = eq.split("->")[0].split(",")   # a term starting with b has the symbolic batch dim first
    inputs = "\n".join(f"{k}: {{shape: [{', '.join(['batch'] * (t[0] == 'b') + [str(d) for d in s[t[0] == 'b':]])}], "
                       "dtype: float32}" for k, s, t in zip(names, shapes, terms))
    want = np.einsum(eq, *[a.astype(np.float64) for a in arrays]).astype(np.float32)
    _check(run_op, onnx_check, f"{{name: n, op: einsum, in: [{', '.join(names)}], equation: '{eq}'}}", inputs,
           dict(zip(names, arrays)), want)


@pytest.mark.parametrize("eq,shapes", [
    ("...id,...jd->...ij", [(2, 3, 5, 4), (2, 3, 6, 4)]),   # '...' = [batch, 3]
    ("bi,...i->b...", [(2, 4), (5, 1, 4)]),                  # '...' kept where the output writes it
    ("b...i,bi->b", [(2, 3, 4), (2, 4)]),                    # '...' summed where it does not
    ("bii->bi", [(2, 4, 4)]),                                # a diagonal per sample
    ("bii->b", [(2, 4, 4)]),                                 # a trace per sample
    ("b...jj,bj->b...", [(2, 3, 4, 4), (2, 4)]),
])
def test_einsum_ellipsis_and_diagonals_match_torch_einsum(run_op, onnx_check, eq, shapes):
    """Oracle: torch.einsum in float64 on the same arrays; the first dim of each input is the symbolic batch."""
    names = "abc"[:len(shapes)]
    arrays = [_x(s, i) for i, s in enumerate(shapes)]
    inputs = "\n".join(f"{k}: {{shape: [batch, {', '.join(str(d) for d in s[1:])}], dtype: float32}}"
                       for k, s in zip(names, shapes))
    if shapes[-1][0] == 5:  # 'bi,...i': the second input's first dim is not the batch
        inputs = inputs.replace("b: {shape: [batch, ", "b: {shape: [5, ")
    want = torch.einsum(eq, *[torch.from_numpy(a).double() for a in arrays]).float().numpy()
    _check(run_op, onnx_check, f"{{name: n, op: einsum, in: [{', '.join(names)}], equation: '{eq}'}}", inputs,
           dict(zip(names, arrays)), want)
