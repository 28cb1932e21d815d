"""Recurrent layers compiled to torch: vs torch.nn.RNN/LSTM/GRU with copied weights, vs the seed's gate equations,
gradchecks (recurrent layers, cells, DyT), BatchNorm2d modes vs torch.nn, and the zoo's RNN specs through
forward/backward, torch.compile and torch.export."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from nngraph.compilers.torch import compile_spec, load_spec

ROOT = Path(__file__).resolve().parents[3]
CHAR_LSTM = ROOT / "specs" / "char_lstm.yaml"


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() <= tol


def _seq_spec(kind: str, extra: str = "", layers: int = 2, dirs: int = 2, states: bool = True) -> str:
    """A one-node spec: x [batch, time, 5] -> kind(hidden 6), initial states as optional graph inputs."""
    lstm = kind == "lstm"
    state_inputs = (f"  h0: {{shape: [{layers * dirs}, batch, 6], dtype: float32, optional: true}}\n"
                    + (f"  c0: {{shape: [{layers * dirs}, batch, 6], dtype: float32, optional: true}}\n" if lstm else ""))
    wire = ("{x: x, h0: h0, c0: c0}" if lstm else "{x: x, h0: h0}") if states else "x"
    return (f"nngraph: 1\nname: seq\ninputs:\n  x: {{shape: [batch, time, 5], dtype: float32}}\n"
            + (state_inputs if states else "")
            + f"graph:\n  - {{name: rnn, op: {kind}, in: {wire}, hidden: 6, layers: {layers}, "
            f"bidirectional: {'true' if dirs == 2 else 'false'}{extra}}}\n"
            + f"outputs: {{out: rnn.out, h: rnn.h{', c: rnn.c' if lstm else ''}}}\n")


def _compile(spec_file, text: str, name: str = "spec.yaml"):
    path = spec_file(text, name)
    return load_spec(path), compile_spec(path)


# ----- sequence layers vs torch.nn ---------------------------------------------
@pytest.mark.parametrize("kind, extra, torch_kw", [
    ("lstm", ", dropout: 0.25", {"dropout": 0.25}),
    ("gru", ", dropout: 0.25", {"dropout": 0.25}),
    ("rnn", ", nonlinearity: relu", {"nonlinearity": "relu"}),
    ("gru", ", bias: false", {"bias": False}),
], ids=["lstm", "gru", "rnn_relu", "gru_no_bias"])
def test_two_layer_bidirectional_layer_matches_torch_nn_with_copied_weights(spec_file, kind, extra, torch_kw):
    graph, model = _compile(spec_file, _seq_spec(kind, extra))
    ref = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind](5, 6, num_layers=2, bidirectional=True,
                                                                 batch_first=True, **torch_kw)
    # the state dict is torch.nn's, under the node name, so the reference's weights load unchanged
    assert list(model.state_dict()) == [f"rnn.{k}" for k in ref.state_dict()]
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == sum(p.numel() for p in ref.parameters())
    model.load_state_dict({f"rnn.{k}": v for k, v in ref.state_dict().items()})
    model.eval(), ref.eval()
    x, h0, c0 = _rand(3, 7, 5), _rand(4, 3, 6, seed=1), _rand(4, 3, 6, seed=2)
    got = model(x, h0, c0) if kind == "lstm" else model(x, h0)
    want_out, want_state = ref(x, (h0, c0) if kind == "lstm" else h0)
    _close(got["out"], want_out)
    if kind == "lstm":
        _close(got["h"], want_state[0]), _close(got["c"], want_state[1])
    else:
        _close(got["h"], want_state)
    # without initial states: zeros, as torch.nn
    got = model(x)
    want_out, _ = ref(x)
    _close(got["out"], want_out)
    assert got["out"].shape == (3, 7, 12) and got["h"].shape == (4, 3, 6)


def test_dropout_between_layers_is_active_only_in_training(spec_file):
    _, model = _compile(spec_file, _seq_spec("lstm", ", dropout: 0.5", dirs=1))
    x = _rand(4, 6, 5)
    assert model.rnn.dropout == 0.5
    torch.manual_seed(0)
    a = model.train()(x)["out"]
    torch.manual_seed(1)
    b = model(x)["out"]
    assert (a - b).abs().max() > 1e-3  # different dropout masks
    _close(model.eval()(x)["out"], model(x)["out"], 0.0)


def _lstm_cell_seed(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """Seed 002, "The LSTM Architecture": f, i, o = σ(W·[h_{t−1}, x_t] + b), C̃ = tanh(W_C·[h_{t−1}, x_t] + b_C),
    C_t = f ⊙ C_{t−1} + i ⊙ C̃_t, h_t = o ⊙ tanh(C_t); the stacked rows are torch's (i, f, g = C̃, o)."""
    hidden = h.shape[-1]
    pre = x @ w_ih.T + h @ w_hh.T + b_ih + b_hh
    i, f, g, o = (pre[:, k * hidden:(k + 1) * hidden] for k in range(4))
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def _gru_cell_seed(x, h, w_ih, w_hh, b_ih, b_hh):
    """Seed 002, "Gated Recurrent Units" (update gate z, reset gate r, candidate h̃, rows r, z, n) in the
    convention nngraph documents and torch/cuDNN compute: the reset gate scales W_hn·h + b_hn (Cho et al.
    scale h before the product), and h_t = (1 − z) ⊙ h̃ + z ⊙ h_{t−1} (the seed writes z for torch's 1 − z)."""
    hidden = h.shape[-1]
    gx, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    r = torch.sigmoid(gx[:, :hidden] + gh[:, :hidden])
    z = torch.sigmoid(gx[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
    n = torch.tanh(gx[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
    return (1 - z) * n + z * h


def test_lstm_cell_follows_the_seed_gate_equations(run_op):
    model, graph = run_op(["{name: n, op: lstm_cell, in: {x: x, h0: h, c0: c}, hidden: 6}"],
                          "x: {shape: [batch, 5], dtype: float32}\nh: {shape: [batch, 6], dtype: float32, optional: true}\n"
                          "c: {shape: [batch, 6], dtype: float32, optional: true}", "{h: n.h, c: n.c}")
    assert list(model.state_dict()) == ["n.weight_ih", "n.weight_hh", "n.bias_ih", "n.bias_hh"]
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 4 * 6 * (5 + 6 + 2)
    x, h, c = _rand(3, 5), _rand(3, 6, seed=1), _rand(3, 6, seed=2)
    got = model(x, h, c)
    want_h, want_c = _lstm_cell_seed(x, h, c, *(p for p in model.n.parameters()))
    _close(got["h"], want_h), _close(got["c"], want_c)
    zero = torch.zeros(3, 6)
    _close(model(x)["h"], _lstm_cell_seed(x, zero, zero, *model.n.parameters())[0])  # absent state = zeros


def test_gru_and_rnn_cells_follow_the_seed_equations(run_op):
    model, graph = run_op(["{name: g, op: gru_cell, in: {x: x, h0: h}, hidden: 6}",
                           "{name: r, op: rnn_cell, in: {x: x, h0: h}, hidden: 6}"],
                          "x: {shape: [batch, 5], dtype: float32}\nh: {shape: [batch, 6], dtype: float32}", "[g, r]")
    assert graph.total_params == 3 * 6 * (5 + 6 + 2) + 6 * (5 + 6 + 2)
    x, h = _rand(3, 5), _rand(3, 6, seed=1)
    got = model(x, h)
    _close(got["g"], _gru_cell_seed(x, h, *model.g.parameters()))
    w_ih, w_hh, b_ih, b_hh = model.r.parameters()
    # seed 002, "Formal Definition": h_t = tanh(W_hh·h_{t−1} + W_xh·x_t + b_h), b_h split as b_ih + b_hh
    _close(got["r"], torch.tanh(h @ w_hh.T + x @ w_ih.T + b_ih + b_hh))


def test_single_layer_lstm_and_gru_unroll_the_cell_equations_over_time(spec_file):
    x = _rand(2, 5, 5)
    _, lstm = _compile(spec_file, _seq_spec("lstm", layers=1, dirs=1, states=False), "lstm.yaml")
    _, gru = _compile(spec_file, _seq_spec("gru", layers=1, dirs=1, states=False), "gru.yaml")
    h = c = torch.zeros(2, 6)
    outs = []
    for t in range(5):
        h, c = _lstm_cell_seed(x[:, t], h, c, *lstm.rnn.parameters())
        outs.append(h)
    got = lstm(x)
    _close(got["out"], torch.stack(outs, 1)), _close(got["h"][0], h), _close(got["c"][0], c)
    h, outs = torch.zeros(2, 6), []
    for t in range(5):
        h = _gru_cell_seed(x[:, t], h, *gru.rnn.parameters())
        outs.append(h)
    _close(gru(x)["out"], torch.stack(outs, 1))


def test_default_init_is_torchs_uniform_and_init_overrides_it(spec_file, run_op):
    _, model = _compile(spec_file, _seq_spec("gru", layers=1, dirs=1, states=False))
    bound = 1 / math.sqrt(6)
    for p in model.parameters():
        assert p.abs().max() <= bound and p.std() > bound / 4  # U(-1/sqrt(H), 1/sqrt(H)), not zeros
    model, _ = run_op("{name: n, op: gru, in: x, hidden: 4, init: {weight_hh_l0: orthogonal, bias_ih_l0: zeros}}",
                      "x: {shape: [batch, time, 3], dtype: float32}", "[n.out]")
    w = model.n.weight_hh_l0  # [3H, H] with orthonormal columns
    _close(w.T @ w, torch.eye(4))
    assert torch.equal(model.n.bias_ih_l0, torch.zeros(12))


def test_lstm_given_only_h0_at_run_time_names_the_node():
    model = compile_spec(CHAR_LSTM, ["hidden=8", "embed=4", "vocab=11"])
    with pytest.raises(ValueError, match="an LSTM state needs both h0 and c0, got only h0") as info:
        model(torch.randint(0, 11, (2, 3)), torch.zeros(2, 2, 8))
    assert info.value.__notes__[0].startswith("in node 'lstm' (lstm) at ")


# ----- gradients (float64 gradcheck, tiny sizes) -------------------------------------
def _gradcheck_module(model: nn.Module, inputs: tuple[torch.Tensor, ...], pick=lambda out: out) -> None:
    """gradcheck of ``model`` w.r.t. its inputs and all its parameters (float64)."""
    model = model.double()
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())

    def fn(*args):
        outs = torch.func.functional_call(model, dict(zip(names, args[len(inputs):])), args[:len(inputs)])
        return pick(outs)

    ins = tuple(t.detach().double().requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(fn, ins + params, eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_gradcheck_through_two_layer_bidirectional_layers(spec_file, kind):
    _, model = _compile(spec_file, _seq_spec(kind).replace("batch, time, 5", "batch, time, 2").replace("hidden: 6", "hidden: 2")
                        .replace("batch, 6]", "batch, 2]"))
    x, h0 = _rand(2, 3, 2), _rand(4, 2, 2, seed=1)
    inputs = (x, h0, _rand(4, 2, 2, seed=2)) if kind == "lstm" else (x, h0)
    _gradcheck_module(model.eval(), inputs, lambda out: tuple(out.values()))


@pytest.mark.parametrize("kind", ["lstm_cell", "gru_cell"])
def test_gradcheck_through_cells(run_op, kind):
    model, _ = run_op(f"{{name: n, op: {kind}, in: {{x: x, h0: h{', c0: c' if kind == 'lstm_cell' else ''}}}, hidden: 3}}",
                      "x: {shape: [batch, 2], dtype: float32}\nh: {shape: [batch, 3], dtype: float32}\n"
                      "c: {shape: [batch, 3], dtype: float32}", "[n.h]")
    _gradcheck_module(model, (_rand(2, 2), _rand(2, 3, seed=1), _rand(2, 3, seed=2)))


def test_gradcheck_through_dyt(run_op):
    model, _ = run_op("{name: n, op: dyt, in: x, alpha_init: 0.7}", "x: {shape: [batch, 4], dtype: float32}")
    with torch.no_grad():
        model.n.weight.mul_(torch.tensor([0.5, -1.0, 2.0, 1.5]))
        model.n.bias.add_(0.3)
    _gradcheck_module(model, (_rand(3, 4),))


def test_batch_norm2d_train_then_eval_matches_torch_nn(run_op):
    model, _ = run_op("{name: n, op: batch_norm, in: x, momentum: 0.2}", "x: {shape: [batch, 3, 4, 4], dtype: float32}")
    ref = nn.BatchNorm2d(3, momentum=0.2)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([0.5, 1.5, -2.0])), ref.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    model.n.load_state_dict(ref.state_dict())
    model.train(), ref.train()
    for step in range(3):  # batch statistics in training; running statistics updated alike
        x = _rand(5, 3, 4, 4, seed=step) * (step + 1) + step
        _close(model(x), ref(x), 2e-5)
    for key, value in ref.state_dict().items():
        _close(model.state_dict()[f"n.{key}"].float(), value.float())
    model.eval(), ref.eval()
    x = _rand(2, 3, 4, 4, seed=9)
    _close(model(x), ref(x))
    assert (model(x) - model.train()(x)).abs().max() > 0.1  # eval really uses the running statistics


# ----- zoo specs ------------------------------------------------------------------
@pytest.mark.parametrize("spec, kwargs", [
    ("char_lstm", {}),
    ("gru_classifier", {}),
], ids=["char_lstm", "gru_classifier"])
def test_rnn_zoo_specs_run_forward_and_backward(spec, kwargs):
    graph = load_spec(ROOT / "specs" / f"{spec}.yaml")
    model = compile_spec(ROOT / "specs" / f"{spec}.yaml")
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    tokens = torch.randint(1, 100, (3, 9), generator=torch.Generator().manual_seed(0))
    out = model(tokens)
    logits = out["logits"] if isinstance(out, dict) else out
    assert logits.shape == ((3, 9, 128) if spec == "char_lstm" else (3, 4))
    logits.logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_char_lstm_state_round_trip_continues_the_sequence():
    """Carrying (h, c) from one chunk to the next equals running the whole sequence (eval mode)."""
    model = compile_spec(CHAR_LSTM, ["hidden=16", "embed=8", "vocab=11"]).eval()
    tokens = torch.randint(0, 11, (2, 10), generator=torch.Generator().manual_seed(0))
    whole = model(tokens)
    first = model(tokens[:, :6])
    second = model(tokens[:, 6:], first["h"], first["c"])
    _close(torch.cat([first["logits"], second["logits"]], 1), whole["logits"])
    _close(second["h"], whole["h"]), _close(second["c"], whole["c"])


def test_char_lstm_torch_compile_aot_eager_matches_eager():
    model = compile_spec(CHAR_LSTM, ["hidden=16", "embed=8", "vocab=11"]).eval()
    tokens = torch.randint(0, 11, (3, 7), generator=torch.Generator().manual_seed(0))
    h0, c0 = _rand(2, 3, 16), _rand(2, 3, 16, seed=1)
    want = model(tokens, h0, c0)
    compiled = torch.compile(model, backend="aot_eager")  # dynamo + AOT autograd, no codegen
    got = compiled(tokens, h0, c0)
    for key in ("logits", "h", "c"):
        _close(got[key], want[key])
    _close(compiled(tokens)["logits"], model(tokens)["logits"])  # the None-state path too


def test_char_lstm_exports_with_and_without_initial_states():
    """torch.export handles nn.LSTM with absent (None) states: they are constants of the trace, so each call
    signature is its own export. Batch may be dynamic; the time dim specializes (aten.lstm's shape guard)."""
    model = compile_spec(CHAR_LSTM, ["hidden=16", "embed=8", "vocab=11"]).eval()
    tokens = torch.randint(0, 11, (3, 7), generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*_flat_weights.*")  # torch's nn.RNNBase bookkeeping under export
        no_state = torch.export.export(model, (tokens,), dynamic_shapes=({0: batch},))
        h0, c0 = _rand(2, 3, 16), _rand(2, 3, 16, seed=1)
        with_state = torch.export.export(model, (tokens, h0, c0),
                                         dynamic_shapes=({0: batch}, {1: batch}, {1: batch}))
    assert set(no_state.state_dict) == set(with_state.state_dict) == set(model.state_dict())
    other = torch.randint(0, 11, (5, 7), generator=torch.Generator().manual_seed(1))
    _close(no_state.module()(other)["logits"], model(other)["logits"])
    h5, c5 = _rand(2, 5, 16, seed=2), _rand(2, 5, 16, seed=3)
    got, want = with_state.module()(other, h5, c5), model(other, h5, c5)
    for key in ("logits", "h", "c"):
        _close(got[key], want[key])
