"""Torch implementations of the control-flow ops (nngraph/ops/control.py): ``recur`` and ``act``.

Both hold their body block as a nested generated model (:mod:`._subgraph`) and call it in a plain
Python loop inside the node's module, so the outer generated ``forward`` stays one line per node:
``decoder_out, decoder_h = self.decoder(tgt_embed, encoder_out)``. The body's weights are shared by
every step: they exist once, under ``<node>.cell.*`` / ``<node>.body.*``.

* :class:`Recur` -- for t in range(T): the cell gets the step-t slices of the ``sequences``, the
  carried states and the loop-invariant context; per-step outputs are stacked on dim 1, states
  replaced. The loop runs inside :func:`~.regularization.shared_masks`, so DropConnect masks
  (``weight_drop`` on a cell) are drawn once per forward pass (AWD-LSTM). Exported to ONNX by the
  tracer, which unrolls the loop: the time dim becomes static in the file.
* :class:`ACT` -- Graves' adaptive computation time with the Universal Transformer's coordinate
  embedding; the loop runs ``max_steps`` times at most and stops early once every position has
  halted (not while tracing: the remaining steps add p = 0, so an unrolled export computes the same).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from ..registry import Emit, NodeCtx, torch_op
from ._subgraph import function_module, function_spec
from .regularization import shared_masks


def block_spec(ctx: NodeCtx, param: str) -> dict[str, Any]:
    """:func:`function_spec` plus the block's declared input order and output names (plain data)."""
    graph = getattr(ctx.params.get(param), "graph", None)
    spec = function_spec(ctx, param)
    assert spec is not None
    if graph is not None:
        spec["declared"] = list(graph.inputs)
        spec["outputs"] = list(graph.outputs)
        ctx.params[param] = spec
    return spec


def call_block(fn: nn.Module, spec: Mapping[str, Any], available: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Call a nested model with the tensors its inputs name; all its outputs by name."""
    out = fn(*[available.get(name) for name in spec["inputs"]])
    return out if isinstance(out, dict) else {spec["outputs"][0]: out}


# ----- recur -----------------------------------------------------------------------------------
def _zero_shapes(ctx: NodeCtx, spec: Mapping[str, Any]) -> dict[str, list[int | None]]:
    """Shape of the zeros each state starts from when nothing initialises it (None: the run-time batch size)."""
    p = ctx.params
    bind = p["bind"] or spec["declared"][:len(ctx.variadic)]
    types = dict(zip(bind, ctx.variadic))
    sequences = p["sequences"] or bind[:1]
    batch = types[sequences[0]].shape[0]
    states = [n for n in spec["declared"] if n in spec["outputs"]]
    out: dict[str, list[int | None]] = {}
    for name in states:
        size = (p["state_size"] or {}).get(name)
        if size is not None:
            dims = size if isinstance(size, list) else [size]
            out[name] = [None if d == "batch" else d for d in (dims if "batch" in dims else ["batch", *dims])]
        elif name in types:
            shape = [None if d == batch else d for d in types[name].shape]
            if all(d is None or isinstance(d, int) for d in shape):
                out[name] = shape  # an optional graph input left out at run time starts from zeros too
    return out


class Recur(nn.Module):
    """A time loop over a cell block with shared weights (see the module docstring)."""

    def __init__(self, cell: dict[str, Any], bind: list[str], sequences: list[str],
                 zero_shapes: dict[str, list[int | None]], reverse: bool = False):
        super().__init__()
        self.spec = cell
        self.cell = function_module(cell)
        self.bind, self.sequences, self.zero_shapes, self.reverse = bind, sequences, zero_shapes, reverse
        self.states = [n for n in cell["declared"] if n in cell["outputs"]]
        self.step_outputs = [n for n in cell["outputs"] if n not in self.states]

    def forward(self, *inputs: torch.Tensor | None) -> Any:
        given = dict(zip(self.bind, inputs))
        first = given[self.sequences[0]]
        assert first is not None, f"sequence '{self.sequences[0]}' is None"
        batch, steps = first.shape[0], first.shape[1]
        if steps == 0:
            raise ValueError("recur: the sequence has no time steps")
        state: dict[str, Any] = {}
        for name in self.states:
            value = given.get(name)
            if value is None:
                shape = self.zero_shapes.get(name)
                if shape is None:
                    raise ValueError(f"recur: state '{name}' is None and has no state_size to start from zeros")
                value = first.new_zeros([batch if d is None else d for d in shape])
            state[name] = value
        context = {n: v for n, v in given.items() if n not in self.sequences and n not in self.states}
        stacked: dict[str, list[torch.Tensor]] = {n: [] for n in self.step_outputs}
        order = range(steps - 1, -1, -1) if self.reverse else range(steps)
        with shared_masks(self.cell):
            for t in order:
                step = {n: given[n][:, t] for n in self.sequences}  # type: ignore[index]
                out = call_block(self.cell, self.spec, {**context, **state, **step})
                state = {n: out[n] for n in self.states}
                for n in self.step_outputs:
                    stacked[n].append(out[n])
        if self.reverse:
            stacked = {n: v[::-1] for n, v in stacked.items()}
        result = tuple(torch.stack(stacked[n], 1) if n in stacked else state[n] for n in self.spec["outputs"])
        return result if len(result) > 1 else result[0]

    def extra_repr(self) -> str:
        return (f"cell={self.spec['block']!r}, sequences={self.sequences}, states={self.states}"
                + (", reverse=True" if self.reverse else ""))


def _recur_module(ctx: NodeCtx) -> Recur:
    spec = block_spec(ctx, "cell")
    p = ctx.params
    bind = p["bind"] or spec["declared"][:len(ctx.variadic)]
    return Recur(spec, list(bind), list(p["sequences"] or bind[:1]), _zero_shapes(ctx, spec), p["reverse"])


@torch_op("recur", module=_recur_module)
def recur(ctx: NodeCtx, e: Emit) -> str:
    """``self.decoder(tgt_embed, encoder_out, h0)`` -> the cell's outputs (stacked per-step ones, final states)."""
    return f"{e.self}({', '.join(e.variadic)})"


# ----- act -------------------------------------------------------------------------------------
def coordinate_embedding(seq: int, dim: int, step: int, like: torch.Tensor) -> torch.Tensor:
    """Universal Transformer coordinates [seq, dim]: sinusoids of the position i plus sinusoids of the step n.

    P[i, 2j] = sin(i·ω_j) + sin(n·ω_j), P[i, 2j+1] = cos(i·ω_j) + cos(n·ω_j), ω_j = 10000^{−2j/dim}.
    """
    omega = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=like.device) * (-math.log(10000.0) / dim))
    pos = torch.arange(seq, dtype=torch.float32, device=like.device)[:, None] * omega
    n = float(step) * omega
    out = torch.stack([torch.sin(pos) + torch.sin(n), torch.cos(pos) + torch.cos(n)], dim=-1).reshape(seq, dim)
    return out.to(like.dtype)


def act_loop(x: torch.Tensor, body: Any, halt: nn.Module, max_steps: int, eps: float,
             coordinates: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Graves' ACT: (Σ_n p^n s^n, mean(N + R), N) with s^n = body(s^{n−1} [+ P^n]), h^n = σ(halt(s^n))."""
    positions = x.shape[:-1]
    cum = x.new_zeros(positions)                       # Σ_{k<n} h^k of the positions still running
    remainder = x.new_zeros(positions)                 # R = 1 − Σ_{k<N} h^k, set when a position halts
    steps = x.new_zeros(positions)                     # N
    running = torch.ones(positions, dtype=torch.bool, device=x.device)
    out = torch.zeros_like(x)
    state = x
    tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    for n in range(max_steps):
        if coordinates:
            state = state + coordinate_embedding(state.shape[1], state.shape[2], n, state)
        state = body(state)
        h = torch.sigmoid(halt(state)).squeeze(-1)
        halts = running.clone() if n == max_steps - 1 else running & (cum + h >= 1.0 - eps)
        p = torch.where(halts, 1.0 - cum, torch.where(running, h, torch.zeros_like(h)))
        remainder = torch.where(halts, 1.0 - cum, remainder)
        steps = steps + running.to(x.dtype)
        out = out + p.unsqueeze(-1) * state
        cum = cum + torch.where(running & ~halts, h, torch.zeros_like(h))
        running = running & ~halts
        if not tracing and not bool(running.any()):
            break
    return out, (steps + remainder).mean(), steps


class ACT(nn.Module):
    """Adaptive computation time around a shared body block (Universal Transformer)."""

    def __init__(self, body: dict[str, Any], d_model: int, max_steps: int, eps: float = 0.01, coordinates: bool = False):
        super().__init__()
        self.spec = body
        self.body = function_module(body)
        self.halt = nn.Linear(d_model, 1)
        self.max_steps, self.eps, self.coordinates = max_steps, eps, coordinates

    def step(self, state: torch.Tensor) -> torch.Tensor:
        return next(iter(call_block(self.body, self.spec, {self.spec["inputs"][0]: state}).values()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return act_loop(x, self.step, self.halt, self.max_steps, self.eps, self.coordinates)

    def extra_repr(self) -> str:
        return f"body={self.spec['block']!r}, max_steps={self.max_steps}, eps={self.eps}, coordinates={self.coordinates}"


@torch_op("act", init={"halt.weight": "xavier_uniform", "halt.bias": ("constant", {"value": 1.0})},
          module=lambda ctx: ACT(block_spec(ctx, "body"), ctx.in_features, ctx.params["max_steps"], ctx.params["eps"],
                                 ctx.params["coordinates"]))
def act(ctx: NodeCtx, e: Emit) -> str:
    """``self.encoder(x)`` -> (out, ponder_cost, steps)."""
    return f"{e.self}({e.x})"
