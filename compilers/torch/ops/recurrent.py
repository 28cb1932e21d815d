"""Torch implementations of the recurrent layers (nngraph/ops/recurrent.py).

Sequence layers (batch-first, as the nngraph ops):

* ``rnn`` -- ``torch.nn.RNN`` (seed 002, "Formal Definition": h_t = tanh(W_hh·h_{t−1} + W_xh·x_t + b_h);
  ``nonlinearity`` tanh or relu); forward line ``rnn_out, rnn_h = self.rnn(x, h0)``.
* ``gru`` -- ``torch.nn.GRU`` (seed 002, "Gated Recurrent Units"); same call and outputs.
* ``lstm`` -- :class:`LSTM`, a subclass of ``torch.nn.LSTM`` (seed 002, "The LSTM
  Architecture") whose ``forward(x, h0=None, c0=None)`` returns the flat tuple
  ``(out, h, c)`` the node's outputs are unpacked from (``nn.LSTM`` returns ``(out, (h, c))``).

Cells (one time step, x [batch, F], states [batch, H]):

* ``rnn_cell`` -- ``torch.nn.RNNCell``; ``gru_cell`` -- ``torch.nn.GRUCell``: ``self.cell(x, h0)``;
* ``lstm_cell`` -- :class:`LSTMCell` (a ``torch.nn.LSTMCell`` taking ``h0, c0`` separately).
* ``weight_drop: p`` on a cell (AWD-LSTM's DropConnect): while training the step uses weight_hh ⊙ M/(1 − p)
  through ``torch.rnn_tanh_cell``/``gru_cell``/``lstm_cell``; inside a ``recur`` loop M is drawn once per
  forward pass (see compilers/torch/ops/regularization.py).

State dicts use torch.nn's own names under the node: ``<node>.weight_ih_l{k}``,
``<node>.weight_hh_l{k}``, ``<node>.bias_ih_l{k}``, ``<node>.bias_hh_l{k}`` (with suffix
``_reverse`` for the backward direction) for the sequence layers and ``<node>.weight_ih``,
``<node>.weight_hh``, ``<node>.bias_ih``, ``<node>.bias_hh`` for the cells; each matrix
stacks the gates in torch's order (LSTM: i, f, g, o; GRU: r, z, n), so a
``torch.nn.LSTM``'s state dict loads into the node unchanged (prefix the keys with the node name).

An initial state that is not connected, or connected to an optional graph input that is
``None`` at run time, is zeros (torch's behaviour). An LSTM needs both ``h0`` and ``c0`` or
neither; the spec checker enforces it for connected inputs, the forward for run-time ``None``.

Default init: PyTorch's own -- every weight and bias ~ U(−1/√H, 1/√H)
(``torch.nn.RNNBase.reset_parameters``), drawn from the node's seeded RNG. Without
specialized initialization an RNN learns dependencies of roughly 10-20 steps (seed 002,
"Backpropagation Through Time and the Vanishing Gradient Problem"); orthogonal recurrent
matrices keep the gradient norm (seed 000, "Recurrent Neural Networks (RNNs)", Arjovsky et
al.) and are one ``init`` away: ``init: {weight_hh_l0: orthogonal, weight_hh_l1: orthogonal}``
(keys name a parameter exactly, so one key per layer and direction; biases likewise,
``bias_ih_l0``). A single initializer (``init: xavier_uniform``) applies to every
``weight_*`` matrix.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Emit, NodeCtx, torch_op
from .regularization import sample_mask


def _state(h0: torch.Tensor | None, c0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    if h0 is None and c0 is None:
        return None
    if h0 is None or c0 is None:
        raise ValueError(f"an LSTM state needs both h0 and c0, got only {'h0' if c0 is None else 'c0'}")
    return h0, c0


class LSTM(nn.LSTM):
    """``torch.nn.LSTM`` (batch-first) with ``forward(x, h0=None, c0=None) -> (out, h, c)``; same parameters."""

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None,  # type: ignore[override]
                c0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, (h, c) = super().forward(x, _state(h0, c0))
        return out, h, c


class _DropConnect:
    """``weight_drop`` (AWD-LSTM's WeightDrop): while training the cell uses weight_hh ⊙ M/(1 − p).

    The mask comes from :func:`~nngraph.compilers.torch.ops.regularization.sample_mask`: inside a ``recur`` loop it
    is drawn once per forward pass and shared by every time step; a cell called alone draws one per call.
    """

    weight_drop: float = 0.0

    def dropping(self) -> bool:
        return bool(self.training and self.weight_drop > 0)  # type: ignore[attr-defined]

    def dropped_hh(self) -> torch.Tensor:
        w = self.weight_hh  # type: ignore[attr-defined]
        return w * sample_mask(self, "weight_hh", w, self.weight_drop)  # type: ignore[arg-type]

    def zeros(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)  # type: ignore[attr-defined]


class RNNCell(_DropConnect, nn.RNNCell):
    """``torch.nn.RNNCell`` with optional DropConnect on weight_hh; same parameters."""

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if not self.dropping():
            return super().forward(x, h0)
        fn = torch.rnn_tanh_cell if self.nonlinearity == "tanh" else torch.rnn_relu_cell
        return fn(x, self.zeros(x) if h0 is None else h0, self.weight_ih, self.dropped_hh(), self.bias_ih, self.bias_hh)


class GRUCell(_DropConnect, nn.GRUCell):
    """``torch.nn.GRUCell`` with optional DropConnect on weight_hh; same parameters."""

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if not self.dropping():
            return super().forward(x, h0)
        return torch.gru_cell(x, self.zeros(x) if h0 is None else h0, self.weight_ih, self.dropped_hh(),
                              self.bias_ih, self.bias_hh)


class LSTMCell(_DropConnect, nn.LSTMCell):
    """``torch.nn.LSTMCell`` with ``forward(x, h0=None, c0=None) -> (h, c)`` and optional DropConnect; same parameters."""

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None,  # type: ignore[override]
                c0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.dropping():
            h, c = super().forward(x, _state(h0, c0))
            return h, c
        state = _state(h0, c0) or (self.zeros(x), self.zeros(x))
        h, c = torch.lstm_cell(x, state, self.weight_ih, self.dropped_hh(), self.bias_ih, self.bias_hh)
        return h, c


_SEQ = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": LSTM}
_CELL = {"rnn_cell": RNNCell, "gru_cell": GRUCell, "lstm_cell": LSTMCell}


def _seq_module(ctx: NodeCtx) -> nn.Module:
    p = ctx.params
    extra = {"nonlinearity": p["nonlinearity"]} if ctx.op == "rnn" else {}
    return _SEQ[ctx.op](ctx.in_features, p["hidden"], num_layers=p["layers"], bias=p["bias"], batch_first=True,
                        dropout=p["dropout"], bidirectional=p["bidirectional"], **extra)


def _cell_module(ctx: NodeCtx) -> nn.Module:
    p = ctx.params
    extra = {"nonlinearity": p["nonlinearity"]} if ctx.op == "rnn_cell" else {}
    cell = _CELL[ctx.op](ctx.in_features, p["hidden"], bias=p["bias"], **extra)
    cell.weight_drop = float(p.get("weight_drop", 0.0))
    return cell


def _call(ctx: NodeCtx, e: Emit) -> str:
    """``self.lstm(x)``, or ``self.lstm(x, h0, c0)`` / ``self.gru(x, h0)`` when initial states are connected."""
    names = ("h0", "c0") if ctx.op in ("lstm", "lstm_cell") else ("h0",)
    states = [e.inputs.get(n, "None") for n in names]
    args = [e.inputs["x"]] + (states if any(s != "None" for s in states) else [])
    return f"{e.self}({', '.join(args)})"


for _op in _SEQ:
    torch_op(_op, module=_seq_module)(_call)
for _op in _CELL:
    torch_op(_op, module=_cell_module)(_call)
