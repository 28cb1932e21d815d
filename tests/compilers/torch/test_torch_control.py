"""Torch control flow: recur (time loop over a cell) against torch.nn's RNNs and hand-written loops, AWD-LSTM's
DropConnect (one mask per forward pass) and locked dropout, orthogonal recurrences through optimizer steps, and
ACT against a straightforward scalar re-implementation of Graves' formulas."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import nngraph.compilers.torch.ops.recurrent as torch_recurrent
from nngraph.compilers.torch import build_module, load_spec
from nngraph.compilers.torch.ops.control import coordinate_embedding

ROOT = Path(__file__).resolve().parents[3]
SEEDS = ROOT / "specs" / "seeds"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


RNN_SPEC = """nngraph: 1
name: t
inputs:
  x: {shape: [batch, seq, 3], dtype: float32}
  h0: {shape: [batch, 5], dtype: float32, optional: true}
blocks:
  step:
    inputs: [x, h]
    nodes:
      - {name: cell, op: rnn_cell, in: {x: x, h0: h}, hidden: 5}
    outputs: {out: cell, h: cell}
graph:
  - {name: n, op: recur, in: [x, h0], cell: step, state_size: {}, reverse: REVERSE}
outputs: {y: n.out, h: n.h}
"""


@pytest.mark.parametrize("reverse", [False, True])
def test_recur_over_an_rnn_cell_is_torch_rnn_with_the_same_weights(compile_text, reverse):
    _, model = compile_text(RNN_SPEC.replace("state_size: {}, ", "").replace("REVERSE", str(reverse).lower()))
    cell = model.n.cell.cell
    ref = nn.RNN(3, 5, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, f"{name}_l0").copy_(getattr(cell, name))
    x, h0 = torch.randn(2, 6, 3, generator=_gen()), torch.randn(2, 5, generator=_gen(1))
    out = model(x, h0)
    xs = x.flip(1) if reverse else x
    want, hn = ref(xs, h0[None])
    want = want.flip(1) if reverse else want
    assert torch.allclose(out["y"], want, atol=1e-6) and torch.allclose(out["h"], hn[0], atol=1e-6)
    zeros = model(x)  # the optional initial state left out: zeros, as torch
    assert torch.allclose(zeros["y"], (ref(xs)[0].flip(1) if reverse else ref(xs)[0]), atol=1e-6)


def test_recur_weights_exist_once_and_the_generated_forward_is_one_line_per_node(compile_text):
    graph, model = compile_text(RNN_SPEC.replace("state_size: {}, ", "").replace("REVERSE", "false"))
    assert sorted(model.state_dict()) == ["n.cell.cell.bias_hh", "n.cell.cell.bias_ih", "n.cell.cell.weight_hh",
                                         "n.cell.cell.weight_ih"]
    assert "n_out, n_h = self.n(x, h0)" in model.source
    assert graph.nodes["n"].n_params == sum(p.numel() for p in model.parameters()) == 3 * 5 + 5 * 5 + 10


def test_luong_input_feeding_decoder_matches_a_hand_written_step_loop():
    graph = load_spec(SEEDS / "seq2seq_luong_input_feeding.yaml",
                      ["src_vocab=40", "tgt_vocab=30", "embed=8", "hidden=12", "layers=2"])
    model = build_module(graph, seed=0).eval()
    src, tgt = torch.randint(0, 40, (3, 5), generator=_gen()), torch.randint(0, 30, (3, 4), generator=_gen(1))
    with torch.no_grad():
        out = model(src_tokens=src, tgt_tokens=tgt)
        memory, (h, c) = model.encoder(model.src_embed(src))[0], model.encoder(model.src_embed(src))[1:]
        step = model.decoder.cell
        lstm = nn.LSTM(8 + 12, 12, 2, batch_first=True)
        lstm.load_state_dict(step.lstm.state_dict())
        w_c, w_s = step.attn_proj.weight, model.readout
        feed = torch.zeros(3, 12)
        logits, attn = [], []
        for t in range(4):
            y = model.tgt_embed(tgt[:, t])
            o, (h, c) = lstm(torch.cat([y, feed], -1)[:, None], (h, c))
            a = torch.softmax(o @ memory.transpose(1, 2), -1)           # [3, 1, src]
            ctx_ = a @ memory
            feed = torch.tanh(torch.cat([ctx_, o], -1) @ w_c.T)[:, 0]    # h̃_t, fed into step t + 1
            logits.append(w_s(feed))
            attn.append(a[:, 0])
    assert torch.allclose(out["logits"], torch.stack(logits, 1), atol=1e-5)
    assert torch.allclose(out["attention"], torch.stack(attn, 1), atol=1e-6)
    assert torch.allclose(out["attention"].sum(-1), torch.ones(3, 4))


# ----- AWD-LSTM: DropConnect and locked dropout ------------------------------------------------------
AWD_SMALL = ["vocab=50", "embed=8", "hidden=12"]


def _recorded_masks(monkeypatch) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    real = torch_recurrent.sample_mask

    def spy(module, key, like, p, shape=None):
        mask = real(module, key, like, p, shape)
        seen.append(mask)
        return mask

    monkeypatch.setattr(torch_recurrent, "sample_mask", spy)
    return seen


def test_awd_dropconnect_draws_one_mask_per_forward_pass_shared_by_every_step(monkeypatch):
    graph = load_spec(SEEDS / "awd_lstm.yaml", AWD_SMALL)
    model = build_module(graph, seed=0).train()
    seen = _recorded_masks(monkeypatch)
    tokens = torch.randint(0, 50, (2, 7), generator=_gen())
    model(tokens)
    assert len(seen) == 3 * 7  # three layers, seven steps each
    per_layer = [seen[i * 7:(i + 1) * 7] for i in range(3)]
    for masks in per_layer:
        assert all(m is masks[0] for m in masks)  # the same mask at every time step
        kept = (masks[0] > 0).float().mean().item()
        assert 0.3 < kept < 0.7 and torch.allclose(masks[0][masks[0] > 0], torch.tensor(2.0))  # p = 0.5, 1/(1-p)
    first = per_layer[0][0]
    seen.clear()
    model(tokens)
    assert not torch.equal(seen[0], first)  # a new forward pass draws a new mask
    model.eval()
    seen.clear()
    model(tokens)
    assert not seen  # no DropConnect at evaluation


def test_weight_dropped_lstm_cell_loop_equals_an_lstm_with_the_masked_recurrent_matrix(monkeypatch):
    graph = load_spec(SEEDS / "awd_lstm.yaml", AWD_SMALL + ["dropouti=0", "dropouth=0", "dropout=0"])
    model = build_module(graph, seed=0).train()
    seen = _recorded_masks(monkeypatch)
    tokens = torch.randint(0, 50, (2, 6), generator=_gen(3))
    h1 = model.layer1(model.embed(tokens))[0]
    cell = model.layer1.cell.lstm
    ref = nn.LSTM(8, 12, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(cell.weight_ih)
        ref.weight_hh_l0.copy_(cell.weight_hh * seen[0])
        ref.bias_ih_l0.copy_(cell.bias_ih)
        ref.bias_hh_l0.copy_(cell.bias_hh)
    assert torch.allclose(h1, ref(model.embed(tokens))[0], atol=1e-6)


def test_locked_dropout_keeps_one_mask_along_time_and_is_the_identity_in_eval(run_op):
    model, _ = run_op("{name: n, op: locked_dropout, in: x, p: 0.5}", "x: {shape: [batch, seq, 16], dtype: float32}")
    x = torch.ones(4, 9, 16)
    y = model.train()(x)
    assert torch.equal(y, y[:, :1].expand_as(y))  # the same mask at every step
    assert set(y.unique().tolist()) <= {0.0, 2.0} and 0 < (y == 0).float().mean() < 1
    assert torch.equal(model.eval()(x), x)


# ----- orthogonal recurrence ------------------------------------------------------------------------
def test_orthogonal_recurrent_matrix_stays_orthogonal_through_optimizer_steps():
    graph = load_spec(SEEDS / "orthogonal_rnn.yaml", ["hidden=12"])
    model = build_module(graph, seed=0)
    rec = model.rnn.cell.rec
    assert "rnn.cell.rec.parametrizations.weight.original" in model.state_dict()
    before = rec.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = torch.randn(8, 10, 1, generator=_gen()), torch.randint(0, 10, (8,), generator=_gen(1))
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    w = rec.weight.detach()
    assert (w - before).abs().max() > 1e-2  # it learned
    assert torch.allclose(w @ w.T, torch.eye(12), atol=1e-5) and torch.allclose(w.T @ w, torch.eye(12), atol=1e-5)
    h = torch.randn(5, 12)
    assert torch.allclose((h @ w.T).norm(dim=-1), h.norm(dim=-1), atol=1e-5)  # norms preserved


# ----- ACT -------------------------------------------------------------------------------------------
ACT_SPEC = """nngraph: 1
name: t
inputs:
  x: {shape: [batch, seq, 4], dtype: float32}
blocks:
  body:
    inputs: [x]
    nodes:
      - {name: fc, op: linear, in: x, out: 4}
      - {name: act, op: tanh, in: fc}
    outputs: [act]
graph:
  - {name: n, op: act, in: x, body: body, max_steps: MAX, eps: 0.05, coordinates: COORD}
outputs: {y: n.out, ponder: n.ponder_cost, steps: n.steps}
"""


def graves_act(states: list[torch.Tensor], halt: nn.Linear, eps: float) -> tuple[torch.Tensor, float, list[int]]:
    """Graves (2016) eqs. 6-14 per position with Python floats: N = min{n : Σ_{k≤n} h^k >= 1 − ε} (or M),
    R = 1 − Σ_{k<N} h^k, y = Σ_{n<N} h^n s^n + R s^N, ρ = N + R; ``states`` are s^1..s^M [B, T, D]."""
    m = len(states)
    b, t, d = states[0].shape
    out = torch.zeros(b, t, d)
    rho, ns = [], []
    for i in range(b):
        for j in range(t):
            hs = [torch.sigmoid(halt(s[i, j])).item() for s in states]
            total, n = 0.0, m
            for k in range(m):
                if total + hs[k] >= 1 - eps:
                    n = k + 1
                    break
                total += hs[k]
            r = 1.0 - sum(hs[:n - 1])
            y = sum(hs[k] * states[k][i, j] for k in range(n - 1)) + r * states[n - 1][i, j]
            out[i, j] = y
            rho.append(n + r)
            ns.append(n)
    return out, sum(rho) / len(rho), ns


@pytest.mark.parametrize("coordinates", [False, True])
def test_act_equals_a_scalar_reimplementation_of_graves_with_positions_halting_at_different_steps(compile_text,
                                                                                                  coordinates):
    _, model = compile_text(ACT_SPEC.replace("MAX", "6").replace("COORD", str(coordinates).lower()))
    n = model.n
    with torch.no_grad():
        n.halt.weight.copy_(torch.tensor([[1.5, -1.0, 0.5, 2.0]]))
        n.halt.bias.fill_(-1.2)
    x = torch.randn(3, 5, 4, generator=_gen(7)) * 2
    out = model(x)
    with torch.no_grad():  # the states s^1..s^M, computed step by step with the body module itself
        states, s = [], x
        for k in range(6):
            if coordinates:
                s = s + coordinate_embedding(5, 4, k, s)
            s = n.body(s)
            states.append(s)
        want, rho, ns = graves_act(states, n.halt, 0.05)
    assert len(set(ns)) >= 3, ns  # positions halt at different steps
    assert torch.allclose(out["y"], want, atol=1e-6)
    assert out["ponder"].item() == pytest.approx(rho, abs=1e-6)
    assert out["steps"].flatten().tolist() == [float(v) for v in ns]


def test_act_gradients_are_finite_and_reach_the_halting_unit_through_the_ponder_cost(compile_text):
    _, model = compile_text(ACT_SPEC.replace("MAX", "5").replace("COORD", "true"))
    x = torch.randn(2, 6, 4, generator=_gen(2), requires_grad=True)
    out = model(x)
    (out["y"].square().mean() + 0.01 * out["ponder"]).backward()
    grads = [p.grad for p in model.parameters()] + [x.grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.n.halt.weight.grad.abs().sum() > 0
    model.zero_grad()
    model(x)["ponder"].backward()  # R = 1 − Σ h depends on the halting unit
    assert model.n.halt.bias.grad.abs().item() > 0


def test_act_stops_early_once_every_position_halted_with_the_same_result_as_running_all_steps(compile_text,
                                                                                              monkeypatch):
    _, model = compile_text(ACT_SPEC.replace("MAX", "8").replace("COORD", "false"))
    with torch.no_grad():
        model.n.halt.bias.fill_(5.0)  # h ≈ 0.99 >= 1 − ε at once: every position halts at step 1
    calls = []
    model.n.body.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 3, 4, generator=_gen())
    eager = model(x)
    assert len(calls) == 1 and eager["steps"].eq(1).all()
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)  # the unrolled (export) path runs all 8 steps
    traced = model(x)
    assert len(calls) == 1 + 8
    assert all(torch.allclose(eager[k], traced[k]) for k in eager)


def test_coordinate_embedding_is_position_sinusoids_plus_step_sinusoids():
    d, seq, step = 6, 4, 3
    got = coordinate_embedding(seq, d, step, torch.zeros(1))
    for i in range(seq):
        for j in range(d // 2):
            w = 10000 ** (-2 * j / d)
            assert got[i, 2 * j].item() == pytest.approx(math.sin(i * w) + math.sin(step * w), abs=1e-5)
            assert got[i, 2 * j + 1].item() == pytest.approx(math.cos(i * w) + math.cos(step * w), abs=1e-5)


def test_universal_transformer_ponder_cost_is_selectable_as_an_aux_loss_like_moe():
    from nngraph.train_schema import match_aux  # what train's loss.aux keys select (compilers/train/plan.py)

    graph = load_spec(SEEDS / "universal_transformer.yaml", ["vocab=40", "d_model=16", "heads=2", "ffn=32",
                                                             "max_steps=4"])
    assert match_aux("encoder.ponder_cost", graph) == ["encoder.ponder_cost"]
    assert match_aux("*.ponder_cost", graph) == ["encoder.ponder_cost"]
    model = build_module(graph, seed=0)
    out = model(torch.randint(0, 40, (2, 5), generator=_gen()))
    assert out["ponder_cost"].shape == () and 1.0 <= out["ponder_cost"].item() <= 4 + 1
    assert out["steps"].shape == (2, 5) and out["steps"].max() <= 4


def test_onnx_export_fixes_the_time_dim_of_a_recur_loop_and_says_so_in_the_metadata(tmp_path):
    from nngraph.compilers.onnx.export import export_graph
    from nngraph.compilers.onnx.metadata import read_metadata

    spec = SEEDS / "awd_lstm.yaml"
    export_graph(load_spec(spec, AWD_SMALL), tmp_path / "awd.onnx", spec_file=str(spec), verify=False)
    meta = read_metadata(tmp_path / "awd.onnx")
    assert meta["dynamic"] == ["batch"]  # seq is fixed: the tracer unrolled the time loop
    assert set(meta["lowering"]) == {"layer1", "layer2", "layer3"} and "time dim" in meta["lowering"]["layer1"]
    assert meta["inputs"][0]["shape"][0] == "batch" and isinstance(meta["inputs"][0]["shape"][1], int)
