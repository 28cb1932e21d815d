"""Control flow with blocks as bodies: a time loop over a cell (``recur``) and adaptive computation time (``act``).

Both take a block written in the spec as their body (the blocks-as-functions mechanism of
:mod:`nngraph.ops._blockfn`) and apply it again and again with the SAME weights:

* ``recur`` -- h_t, y_t = cell(x_t, h_{t-1}, context) for t = 1..T (seed 000, "Limitations and
  Development": RNNs, Recurrent Highway Networks' deep transition per step, orthogonal recurrences;
  seed 002, "Formal Definition": h_t = f(W_hh h_{t-1} + W_xh x_t + b)). The cell's inputs play three
  roles, read from the block's own interface: a cell input that is also a cell *output* of the same
  name is a carried state (``h`` in, ``h`` out); inputs named in ``sequences`` are sliced one time
  step at a time; every other input is loop-invariant context (e.g. an encoder memory to attend over).
* ``act`` -- Graves' adaptive computation time around one block (the Universal Transformer's shared
  layer; seed 000, "Different Types of Transformers": "adaptive-depth recurrence (Universal
  Transformer)"): the block is applied up to ``max_steps`` times per position until the halting
  probabilities sum to 1 − ε; the output is the halting-weighted mean of the states.
"""

from __future__ import annotations

from typing import Any

from ..registry import REQUIRED, InferCtx, Param, op, p_bool, p_float, p_int
from ..types import Dim, TensorType, dims_differ, dims_equal, format_shape
from ._blockfn import block_param, declare_functions, function_graph, function_params, infer_function

_SCALAR = TensorType((), "float32")


# ----- parameters --------------------------------------------------------------------------
def _names_check(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not value:
        return [("", f"expected a non-empty list of cell input names, got {value!r}")]
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.isidentifier():
            return [(str(i), f"expected an identifier, got {name!r}")]
    if len(set(value)) != len(value):
        return [("", f"names must be distinct, got {value}")]
    return []


def _p_names(doc: str) -> Param:
    return Param("custom", doc, None, schema={"type": "array", "items": {"type": "string"}, "minItems": 1},
                 check=_names_check)


def _sizes_check(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        return [("", f"expected a mapping state name -> size (an int, or a list of ints and 'batch'), got {value!r}")]
    for key, size in value.items():
        dims = size if isinstance(size, list) else [size]
        ok = all((isinstance(d, int) and not isinstance(d, bool) and d >= 1) or d == "batch" for d in dims)
        if not ok or not dims or sum(d == "batch" for d in dims) > 1:
            return [(str(key), f"expected a positive int or a list of positive ints with at most one 'batch', got {size!r}")]
    return []


_STATE_SIZE = Param("custom", "shape of each carried state that no input initialises (zeros): an int n means "
                    "[batch, n]; a list gives the dims, with 'batch' where the batch dim goes (prepended if absent)",
                    None, schema={"type": "object", "additionalProperties": {"anyOf": [
                        {"type": "integer", "minimum": 1},
                        {"type": "array", "items": {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "batch"}]}}]}},
                    check=_sizes_check)


def state_shape(size: int | list, batch: Dim) -> tuple[Dim, ...]:
    """The shape ``state_size`` gives one state, with ``batch`` in its place."""
    dims = size if isinstance(size, list) else [size]
    if "batch" not in dims:
        dims = ["batch"] + list(dims)
    return tuple(batch if d == "batch" else d for d in dims)


# ----- recur ---------------------------------------------------------------------------------
def _cell_outputs(params: dict) -> tuple[str, ...]:
    graph = getattr(params.get("cell"), "graph", None)
    return tuple(graph.outputs) if graph is not None else ("out",)


def _same_type(a: TensorType, b: TensorType) -> bool:
    return a.rank == b.rank and a.dtype == b.dtype and all(dims_equal(x, y) is not False for x, y in zip(a.shape, b.shape))


@op("recur", family="control", inputs=("*inputs",), params={
    "cell": block_param("the block applied at every time step (same weights each step); its inputs that are also "
                        "its outputs are carried states", REQUIRED),
    "bind": _p_names("the cell input each entry of 'in' feeds, in order (default: the cell's inputs in "
                     "declaration order)"),
    "sequences": _p_names("cell inputs fed one time step at a time from [batch, time, ...] tensors (default: the "
                          "first bound input)"),
    "state_size": _STATE_SIZE,
    "reverse": p_bool("run from the last time step to the first (outputs keep the input's time order)", False),
}, outputs=_cell_outputs, count=lambda ctx: function_params(ctx, "cell"),
    example={"in": ["embed", "encoder_out"], "cell": "decoder_step", "bind": ["x", "memory"],
             "state_size": {"h": 512, "c": 512}},
    shape_hint="recur takes [batch, time, ...] sequences, initial states and loop-invariant context tensors")
def recur(ctx: InferCtx) -> dict[str, TensorType]:
    """Time loop: for t = 1..T, (y_t, h_t) = cell(x_t, h_{t−1}, context); outputs stacked y and final h (seed 000, "Limitations and Development"; seed 002, "Formal Definition").

    Wiring: ``in`` lists tensors, ``bind`` names the cell input each one feeds (default: the cell's
    inputs in order). A cell input that is also a cell output of the same name is a carried state:
    initialised from its bound tensor, else zeros of ``state_size`` (an int n = [batch, n]), and
    replaced by the cell's output after every step. Inputs in ``sequences`` (default: the first bound
    input) are [batch, T, ...] and the cell sees [batch, ...] at step t; other bound inputs are
    loop-invariant context passed unchanged to every step. Outputs, named as the cell's outputs:
    per-step outputs stacked to [batch, T, ...], and each state's final value.
    Weights are shared across steps: params: the cell block's own, under ``<node>.cell.*``
    (e.g. ``decoder.cell.lstm.weight_hh``). DropConnect masks inside the cell (``weight_drop``) are
    drawn once per forward pass of the loop, not per step (AWD-LSTM).
    """
    p = ctx.params
    graph = function_graph(ctx, "cell")
    declared, outs = list(graph.inputs), list(graph.outputs)
    given = list(ctx.variadic)
    bind = p["bind"] or declared[:len(given)]
    if len(bind) != len(given):
        ctx.fail(f"bind names {len(bind)} cell input(s), 'in' gives {len(given)} tensor(s)",
                 "one name in bind per entry of in, in the same order", "bind")
    unknown = [b for b in bind if b not in declared]
    if unknown:
        ctx.fail(f"bind: cell '{p['cell']}' has no input '{unknown[0]}'; its inputs are {', '.join(declared)}",
                 None, "bind")
    bound = dict(zip(bind, given))
    states = [name for name in declared if name in outs]
    sequences = p["sequences"] or bind[:1]
    for name in sequences:
        if name not in bound:
            ctx.fail(f"sequence '{name}' is not bound to an input: expected one of {', '.join(bind)}",
                     "list it in bind and connect its tensor", "sequences")
        if name in states:
            ctx.fail(f"'{name}' is a carried state (the cell also returns '{name}'), not a sequence", None, "sequences")
    first = bound[sequences[0]]
    if first.rank < 2:
        ctx.fail(f"sequence '{sequences[0]}' must be [batch, time, ...], got {format_shape(first.shape)}", ctx.op.shape_hint)
    batch, steps = first.shape[0], first.shape[1]
    sizes = p["state_size"] or {}
    for name in sizes:
        if name not in states:
            ctx.fail(f"state_size names '{name}', which is not a carried state of cell '{p['cell']}' "
                     f"(states: {', '.join(states) or 'none'})", "a state is a cell input that is also a cell output",
                     "state_size")
    types: dict[str, TensorType] = {}
    for name in declared:
        t = bound.get(name)
        if name in sequences:
            assert t is not None
            if t.rank < 2:
                ctx.fail(f"sequence '{name}' must be [batch, time, ...], got {format_shape(t.shape)}", ctx.op.shape_hint)
            ctx.need_dim(t.shape[0], batch, f"batch dim of sequence '{name}'")
            ctx.need_dim(t.shape[1], steps, f"time dim of sequence '{name}'")
            types[name] = t.with_shape((t.shape[0],) + t.shape[2:])
        elif t is not None:
            if name in sizes:
                ctx.fail(f"state '{name}' is initialised from an input, so state_size does not apply", None, "state_size")
            types[name] = t
        elif name in states:
            if name not in sizes:
                ctx.fail(f"state '{name}' has no initial value", f"bind an input to '{name}', or give "
                         f"state_size: {{{name}: N}} to start from zeros", "state_size")
            types[name] = TensorType(state_shape(sizes[name], batch), first.dtype)
        elif not graph.inputs[name].optional:
            ctx.fail(f"cell input '{name}' is not bound to any input", f"add it to bind and connect a tensor", "bind")
    result = infer_function(ctx, "cell", types, "cell")
    out: dict[str, TensorType] = {}
    for name, t in result.items():
        if name in states:
            if not _same_type(t, types[name]):
                ctx.fail(f"state '{name}': the cell takes {types[name]} but returns {t}",
                         "a carried state must keep its shape and dtype from step to step", "cell")
            out[name] = types[name]
        else:
            if t.rank < 1 or dims_differ(t.shape[0], batch):
                ctx.fail(f"per-step output '{name}' must start with the batch dim {batch}, got {format_shape(t.shape)}",
                         None, "cell")
            out[name] = t.with_shape((t.shape[0], steps) + t.shape[1:])
    return out


declare_functions(recur, cell=None)


# ----- act -----------------------------------------------------------------------------------
def _act_count(ctx: InferCtx) -> int:
    return function_params(ctx, "body") + ctx.x.shape[-1] + 1


@op("act", family="control", params={
    "body": block_param("the block applied at every step (one transformer layer: same weights at every step), "
                        "[..., D] -> [..., D]", REQUIRED),
    "max_steps": p_int("the most steps any position takes (Graves' M)"),
    "eps": p_float("halting threshold ε: a position halts once its halting probabilities sum to >= 1 − ε",
                   0.01, min=0.0, max=1.0),
    "coordinates": p_bool("add the Universal Transformer's coordinate embedding before every step: sinusoids of "
                          "the position plus sinusoids of the step (x must be [batch, seq, D], D even)", False),
}, outputs=("out", "ponder_cost", "steps"), count=_act_count,
    example={"in": "x", "body": "ut_layer", "max_steps": 8, "eps": 0.01, "coordinates": True},
    shape_hint="act takes x [..., D]; the body maps [..., D] to [..., D]")
def act(ctx: InferCtx) -> dict[str, TensorType]:
    """Adaptive computation time (Graves 2016) around a shared block (Universal Transformer; seed 000, "Different Types of Transformers").

    For n = 1..M: s^n = body(s^{n−1} [+ P^n]) with s^0 = x; halting unit h^n = σ(s^n w_hᵀ + b_h) per
    position (last dim D). N = min{n : Σ_{k≤n} h^k >= 1 − ε} (or M), remainder R = 1 − Σ_{k<N} h^k,
    p^n = h^n for n < N and p^N = R; out = Σ_n p^n s^n (the halting-weighted mean of the states).
    ``ponder_cost`` = mean over positions of N + R (add it to the loss with a small weight:
    ``train: {loss: {aux: {"*.ponder_cost": 0.01}}}``); ``steps`` = N per position (float).
    ``coordinates``: P^n_{i,2j} = sin(i/10000^{2j/D}) + sin(n/10000^{2j/D}), P^n_{i,2j+1} = cos(..) +
    cos(..) with the step n counted from 0 (Dehghani et al. 2018).
    Steps after every position halted change nothing (p = 0), so the loop stops early in eager mode.
    params: halt.weight [1, D], halt.bias [1] (initialised to 1, as Graves); the body's own under ``<node>.body.*``.
    """
    x = ctx.x
    ctx.need_float(x)
    ctx.need_min_rank(x, 2, "x")
    d = x.shape[-1]
    if not isinstance(d, int):
        ctx.fail(f"the last dim of x must be a concrete size, got '{d}'", "declare the model dim as an integer")
    if ctx.params["coordinates"]:
        if x.rank != 3:
            ctx.fail(f"coordinates need x [batch, seq, D], got {format_shape(x.shape)}", None, "coordinates")
        if d % 2:
            ctx.fail(f"coordinates need an even model dim (sin/cos pairs), got {d}", None, "coordinates")
    graph = function_graph(ctx, "body")
    if len(graph.inputs) != 1:
        ctx.fail(f"the body block takes exactly one input (the state), '{ctx.params['body']}' takes "
                 f"{len(graph.inputs)}", None, "body")
    out = next(iter(infer_function(ctx, "body", {next(iter(graph.inputs)): x}, "body").values()))
    if not _same_type(out, x):
        ctx.fail(f"the body must map the state to the same shape and dtype: expected {x}, got {out}",
                 "the state is fed back into the body at every step", "body")
    per_position = TensorType(x.shape[:-1], "float32")
    return {"out": x, "ponder_cost": _SCALAR, "steps": per_position}


declare_functions(act, body=None)
