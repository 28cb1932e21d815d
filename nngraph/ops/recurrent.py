"""Recurrent layers: Elman RNN, LSTM and GRU, as sequence layers and as single-step cells.

Formulas: seed 002 "Formal Definition" (RNN: h_t = tanh(W_hh·h_{t−1} + W_xh·x_t + b_h)),
seed 002 "The LSTM Architecture" (forget/input/output gates, C_t = f_t ⊙ C_{t−1} + i_t ⊙ C̃_t,
h_t = o_t ⊙ tanh(C_t)), seed 002 "Gated Recurrent Units" (update gate z_t, reset gate r_t,
h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t); seed 000 "Recurrent Neural Networks (RNNs)" and
"Long Short-Term Memory (LSTMs)".

Sequence layers are batch-first: x [batch, time, features]. Their states are
[layers·dirs, batch, hidden] (dirs = 2 when bidirectional), exactly as torch.nn.RNN/LSTM/GRU;
initial states are optional inputs, final states are the outputs ``h`` (and ``c``), referenced
as ``node.h``. Each weight matrix stacks the gates: 1 (RNN), 3 (GRU: r, z, n) or 4 (LSTM: i, f, g, o).
"""

from __future__ import annotations

from ..registry import InferCtx, op, p_bool, p_enum, p_int
from ..cost.rules import CostCtx
from ..types import DTYPE_BYTES, Dim, TensorType, dims_differ, format_shape
from .regularization import p_probability

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
NAMES = {"rnn": "Elman RNN", "gru": "GRU", "lstm": "LSTM"}
FORMULAS = {
    "rnn": "h_t = act(W_ih·x_t + b_ih + W_hh·h_{t−1} + b_hh), act = tanh or relu (seed 002, \"Formal Definition\")",
    "lstm": ("i, f, g, o = σ, σ, tanh, σ(W_ih·x_t + b_ih + W_hh·h_{t−1} + b_hh); c_t = f ⊙ c_{t−1} + i ⊙ g; "
             "h_t = o ⊙ tanh(c_t) (seed 002, \"The LSTM Architecture\")"),
    "gru": ("r, z = σ(W_i{r,z}·x_t + b_i{r,z} + W_h{r,z}·h_{t−1} + b_h{r,z}); n = tanh(W_in·x_t + b_in + r ⊙ (W_hn·h_{t−1} + b_hn)); "
            "h_t = (1 − z) ⊙ n + z ⊙ h_{t−1} (seed 002, \"Gated Recurrent Units\")"),
}


def _dirs(params: dict) -> int:
    """Directions of a sequence layer: 2 when ``bidirectional``, else 1."""
    return 2 if params["bidirectional"] else 1


def _features(ctx: InferCtx, x: TensorType, rank: int, layout: str) -> Dim:
    if x.rank != rank:
        ctx.fail(f"input x must have rank {rank} {layout}, got rank {x.rank} {format_shape(x.shape)}",
                 "recurrent layers are batch-first" if rank == 3 else "a cell processes one time step")
    ctx.need_float(x)
    f = x.shape[-1]
    if not isinstance(f, int):
        ctx.fail(f"the feature dim of the input {format_shape(x.shape)} must be a concrete size, got '{f}'",
                 "declare the feature dim as an integer (or feed token ids through an embedding)")
    return f


def _check_states(ctx: InferCtx, kind: str, x: TensorType, expected: tuple[Dim, ...], layout: str) -> None:
    names = ("h0", "c0") if kind == "lstm" else ("h0",)
    given = [n for n in names if ctx.inputs.get(n) is not None]
    if kind == "lstm" and len(given) == 1:
        missing = "c0" if given == ["h0"] else "h0"
        ctx.fail(f"an LSTM state needs both h0 and c0, got only {given[0]}", f"connect {missing} too, or neither", missing)
    for name in given:
        t = ctx.inputs[name]
        assert t is not None
        if t.rank != len(expected) or any(dims_differ(a, b) for a, b in zip(t.shape, expected)):
            ctx.fail(f"initial state {name} must have shape {layout} = {format_shape(expected)}, got {format_shape(t.shape)}",
                     "the state has one [batch, hidden] slice per layer and direction", name)
        if t.dtype != x.dtype:
            ctx.fail(f"initial state {name} has dtype {t.dtype}, the input x has {x.dtype}", "use the same dtype", name)


def _seq_params(kind: str) -> dict:
    params = {
        "hidden": p_int("hidden size H (per direction)"),
        "layers": p_int("number of stacked recurrent layers", 1),
        "bidirectional": p_bool("also run the sequence backwards; outputs concatenate both directions", False),
        "bias": p_bool("learnable biases b_ih and b_hh", True),
        "dropout": p_probability("dropout on the outputs of every layer except the last (needs layers > 1)", 0.0),
    }
    if kind == "rnn":
        params["nonlinearity"] = p_enum("activation of the Elman RNN", ("tanh", "relu"), "tanh")
    return params


def _seq_count(kind: str):
    def count(ctx: InferCtx) -> int:
        g, f, h = GATES[kind], ctx.inputs["x"].shape[-1], ctx.params["hidden"]
        dirs = _dirs(ctx.params)
        b = 2 * g * h if ctx.params["bias"] else 0
        per_layer = dirs * (g * h * h + b)  # recurrent weights and biases: the same in every layer
        inputs = dirs * g * h * (f + (ctx.params["layers"] - 1) * dirs * h)  # layer 0 reads f features, the rest dirs*h
        return ctx.params["layers"] * per_layer + inputs
    return count


def _seq_flops(kind: str):
    def flops(c: CostCtx) -> int:
        """Σ over layers and directions of T steps of 2·B·gH·(in_k + H): the input and the recurrent product."""
        b, t, f = c.inputs["x"]
        g, h, layers = GATES[kind], c.params["hidden"], c.params["layers"]
        dirs = _dirs(c.params)
        return sum(dirs * t * 2 * b * g * h * ((f if k == 0 else dirs * h) + h) for k in range(layers))
    return flops


def _seq_steps(c: CostCtx) -> int:
    """Products of a sequence layer: one per time step, layer and direction (each step waits for the last)."""
    return c.inputs["x"][1] * c.params["layers"] * _dirs(c.params)


def _seq_reread(c: CostCtx) -> int:
    """Bytes of W_hh [gH, H] read again at every step after the first, per layer and direction: (T − 1)·gH·H·bytes.
    Each step's product multiplies the new hidden state by the whole matrix, so a small batch makes the recurrence
    memory-bound: 2·B FLOPs per 4-byte weight, 1 FLOP/byte at B = 2 (seed 002, "The LSTM Architecture")."""
    t, g, h = c.inputs["x"][1], GATES[c.node.op], c.params["hidden"]
    size = DTYPE_BYTES.get(c.node.outputs["out"].dtype, 4)
    return c.params["layers"] * _dirs(c.params) * (t - 1) * g * h * h * size


#: aten kernels of one time step of a layer the CPU runs cell by cell (a GRU: the gates' products, sigmoids,
#: tanh and updates); an LSTM (and an Elman RNN) runs a fused oneDNN layer: 2 kernels per layer
STEP_KERNELS = {"gru": 13}


def _seq_kernels(kind: str):
    def kernels(c: CostCtx) -> int:
        """12 + :data:`STEP_KERNELS` per step, layer and direction for a layer run cell by cell; 3 + 2 per layer
        for a fused one (counted with a TorchDispatchMode on the zoo's CPU lowering)."""
        if kind in STEP_KERNELS:
            return 12 + STEP_KERNELS[kind] * _seq_steps(c)
        return 3 + 2 * c.params["layers"]
    return kernels


def _seq_backward(kind: str):
    def backward(c: CostCtx) -> int:
        """Forward (every weight's gradient) + the input gradient of each layer's input product (layer 0's only when
        x needs one) + the hidden gradient of the recurrent product at every step but the first, which multiplies
        h0 (it too when h0 needs a gradient; an absent h0 is zeros)."""
        b, t, f = c.inputs["x"]
        g, h, layers = GATES[kind], c.params["hidden"], c.params["layers"]
        dirs = _dirs(c.params)
        inputs = sum(dirs * t * 2 * b * g * h * (f if k == 0 else dirs * h)
                     for k in range(layers) if k > 0 or c.needs_grad("x"))
        hidden = layers * dirs * (t - 1 + int(c.needs_grad("h0"))) * 2 * b * g * h * h
        return c.forward + inputs + hidden
    return backward


def _register_seq(kind: str) -> None:
    outputs = ("out", "h", "c") if kind == "lstm" else ("out", "h")
    inputs = ("x", "h0?", "c0?") if kind == "lstm" else ("x", "h0?")

    def rule(ctx: InferCtx) -> dict[str, TensorType]:
        x = ctx.inputs["x"]
        assert x is not None
        _features(ctx, x, 3, "[batch, time, features]")
        h, layers = ctx.params["hidden"], ctx.params["layers"]
        dirs = _dirs(ctx.params)
        if ctx.params["dropout"] and layers == 1:
            ctx.fail(f"dropout {ctx.params['dropout']} has no effect with layers: 1 (it applies between stacked layers)",
                     "remove dropout, or use layers >= 2 (add a dropout node after the layer instead)", "dropout")
        state = (layers * dirs, x.shape[0], h)
        _check_states(ctx, kind, x, state, "[layers·dirs, batch, hidden]")
        out = {"out": TensorType((x.shape[0], x.shape[1], dirs * h), x.dtype), "h": TensorType(state, x.dtype)}
        if kind == "lstm":
            out["c"] = TensorType(state, x.dtype)
        return out

    states = "h0 and c0" if kind == "lstm" else "h0"
    finals = "h and c" if kind == "lstm" else "h"
    rule.__doc__ = (
        f"{NAMES[kind]} sequence layer (torch.nn.{kind.upper()}, batch_first): x [batch, T, F] -> out [batch, T, dirs·H], "
        f"final {finals} [layers·dirs, batch, H]; optional initial {states} [layers·dirs, batch, H].\n\n"
        f"{FORMULAS[kind]}.\n"
        f"params per layer k (and with suffix _reverse for the backward direction): weight_ih_l{{k}} [{GATES[kind]}H, in_k], "
        f"weight_hh_l{{k}} [{GATES[kind]}H, H], bias_ih_l{{k}} [{GATES[kind]}H], bias_hh_l{{k}} [{GATES[kind]}H]; "
        f"in_0 = F, in_k = dirs·H.")
    op(kind, family="recurrent", inputs=inputs, outputs=outputs, params=_seq_params(kind), count=_seq_count(kind),
       flops=_seq_flops(kind), backward=_seq_backward(kind), kernels=_seq_kernels(kind), products=_seq_steps,
       reread=_seq_reread,
       example={"in": "embed", "hidden": 256, "layers": 2},
       shape_hint="x is [batch, time, features]")(rule)


def _cell_count(kind: str):
    def count(ctx: InferCtx) -> int:
        g, f, h = GATES[kind], ctx.inputs["x"].shape[-1], ctx.params["hidden"]
        return g * h * f + g * h * h + (2 * g * h if ctx.params["bias"] else 0)
    return count


def _register_cell(kind: str) -> None:
    name = f"{kind}_cell"
    outputs = ("h", "c") if kind == "lstm" else ("h",)
    inputs = ("x", "h0?", "c0?") if kind == "lstm" else ("x", "h0?")
    params = {"hidden": p_int("hidden size H"), "bias": p_bool("learnable biases b_ih and b_hh", True),
              "weight_drop": p_probability("DropConnect on the hidden-to-hidden matrix weight_hh while training (AWD-LSTM, "
                                           "Merity et al. 2017): inside a recur loop one mask per forward pass, shared "
                                           "by every step", 0.0)}
    if kind == "rnn":
        params["nonlinearity"] = p_enum("activation of the Elman RNN", ("tanh", "relu"), "tanh")

    def rule(ctx: InferCtx) -> dict[str, TensorType]:
        x = ctx.inputs["x"]
        assert x is not None
        _features(ctx, x, 2, "[batch, features]")
        state = (x.shape[0], ctx.params["hidden"])
        _check_states(ctx, kind, x, state, "[batch, hidden]")
        return {o: TensorType(state, x.dtype) for o in outputs}

    states = "h0 and c0" if kind == "lstm" else "h0"
    rule.__doc__ = (
        f"One step of the {NAMES[kind]} (torch.nn.{kind.upper()}Cell): x [batch, F] and optional previous state {states} "
        f"[batch, H] (zeros when absent) -> new {' and '.join(outputs)} [batch, H].\n\n"
        f"{FORMULAS[kind]}.\n"
        f"params: weight_ih [{GATES[kind]}H, F], weight_hh [{GATES[kind]}H, H], bias_ih [{GATES[kind]}H], bias_hh [{GATES[kind]}H].\n"
        f"weight_drop p: while training weight_hh is replaced by weight_hh ⊙ M/(1 − p), M ~ Bernoulli(1 − p) per entry "
        f"(DropConnect; seed 000, \"Empirical Understandings\": AWD-LSTM).")
    op(name, family="recurrent", inputs=inputs, outputs=outputs, params=params, count=_cell_count(kind),
       example={"in": {"x": "x_t", "h0": "h_prev"}, "hidden": 128},
       shape_hint="x is [batch, features]")(rule)


for _kind in ("rnn", "lstm", "gru"):
    _register_seq(_kind)
for _kind in ("rnn", "lstm", "gru"):
    _register_cell(_kind)
