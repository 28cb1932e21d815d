"""Dense layers: linear (with weight tying), MLP/FFN, gated MLP (SwiGLU/GeGLU), embedding.

Formulas: seed 000 "Neural networks" (y = Wx + b), seed 002 §Transformer
position-wise FFN (FFN(x) = act(xW₁ + b₁)W₂ + b₂) and the gated variant
SwiGLU(x) = (silu(xW) ⊙ xV)W₂ used by LLaMA.
"""

from __future__ import annotations

from ..registry import InferCtx, op, p_bool, p_enum, p_float, p_int, p_ref
from ..types import TensorType
from ..cost.rules import CostCtx, dense, rows
from .activation import FFN_ACTIVATIONS

_ACT_CHOICES = FFN_ACTIVATIONS


def _in_features(ctx: InferCtx) -> int:
    ctx.need_min_rank(ctx.x, 1)
    ctx.need_float(ctx.x)
    d = ctx.x.shape[-1]
    if not isinstance(d, int):
        ctx.fail(f"the last dim of the input must be a concrete size, got '{d}'",
                 "declare the feature dim of the graph input as an integer")
    return d


def _linear_count(ctx: InferCtx) -> int:
    d_in, d_out = ctx.x.shape[-1], ctx.params["out"]
    weight = 0 if ctx.params.get("tie") else d_in * d_out
    return weight + (d_out if ctx.params["bias"] else 0)


def _linear_flops(c: CostCtx) -> int:
    """2·rows·in·out (tied or not: the product is computed either way)."""
    return dense(rows(c.x), c.x[-1], c.out[-1])


@op("linear", family="dense", params={
    "out": p_int("output features"),
    "bias": p_bool("add a learnable bias", True),
    "tie": p_ref("share the weight with this embedding node (weight tying); the weight is [out, in]"),
    "parametrize": p_enum("keep the weight on a manifold during training: orthogonal = W is an orthogonal matrix "
                          "at every step (torch.nn.utils.parametrizations.orthogonal); none = a plain matrix",
                          ("none", "orthogonal"), "none"),
}, count=_linear_count, flops=_linear_flops, example={"in": "x", "out": 10})
def linear(ctx: InferCtx) -> TensorType:
    """Affine map y = x Wᵀ + b over the last dim (seed 000, "Neural networks").

    params: weight [out, in], bias [out]. ``parametrize: orthogonal`` keeps W orthogonal (WᵀW = I) through
    training, for orthogonal recurrences (seed 000, "Limitations and Development", Arjovsky et al. 2016): W is
    computed from an unconstrained matrix of the same size (state dict: parametrizations.weight.original
    [out, in]), so the parameter count is unchanged; out must equal in.
    """
    d_in = _in_features(ctx)
    tie = ctx.refs.get("tie")
    if ctx.params.get("tie") and tie is None:
        ctx.fail(f"tie target '{ctx.params['tie']}' has no known output", None, "tie")
    if tie is not None:
        if tie.op != "embedding":
            ctx.fail(f"can only tie to an embedding node, '{ctx.params['tie']}' is {tie.op}", None, "tie")
        if tie.params.get("tie"):
            ctx.fail(f"'{ctx.params['tie']}' is itself tied to '{tie.params['tie']}'",
                     f"tie to '{tie.params['tie']}' directly", "tie")
        num, dim = tie.params["num"], tie.params["dim"]
        if (num, dim) != (ctx.params["out"], d_in):
            ctx.fail(f"tied weight shape mismatch: embedding is [{num}, {dim}], this linear needs [{ctx.params['out']}, {d_in}]",
                     "out must equal the embedding's num and the input features its dim", "tie")
    if ctx.params.get("parametrize", "none") == "orthogonal":
        if tie is not None:
            ctx.fail("a tied weight cannot be parametrized", "remove tie or parametrize", "parametrize")
        if ctx.params["out"] != d_in:
            ctx.fail(f"an orthogonal weight must be square: expected out = {d_in} (the input features), "
                     f"got {ctx.params['out']}", "orthogonal recurrences map the hidden state to itself", "parametrize")
    return ctx.x.with_last(ctx.params["out"])


def _mlp_count(ctx: InferCtx) -> int:
    d_in, hidden = ctx.x.shape[-1], ctx.params["hidden"]
    d_out = ctx.params["out"] or d_in
    b = 1 if ctx.params["bias"] else 0
    return d_in * hidden + hidden * b + hidden * d_out + d_out * b


@op("mlp", family="dense", params={
    "hidden": p_int("hidden width (often 4·d_model)"),
    "out": p_int("output features (default: same as input)", None),
    "activation": p_enum("activation between the two linears", _ACT_CHOICES, "gelu"),
    "bias": p_bool("biases on both linears", True),
    "dropout": p_float("dropout after the activation", 0.0, min=0.0, max=1.0),
}, count=_mlp_count, flops=lambda c: _mlp_flops(c, 1), kernels=3, products=2, example={"in": "x", "hidden": 3072, "activation": "gelu"})
def mlp(ctx: InferCtx) -> TensorType:
    """Position-wise FFN: act(x W₁ + b₁) W₂ + b₂ (seed 002, Transformer feed-forward); params ``up`` and ``down``."""
    d_in = _in_features(ctx)
    return ctx.x.with_last(ctx.params["out"] or d_in)


def _mlp_flops(c: CostCtx, gates: int) -> int:
    """2·rows·(gates·in·hidden + hidden·out): the up (and gate) projection, then the down one."""
    n, hidden = rows(c.x), c.params["hidden"]
    return gates * dense(n, c.x[-1], hidden) + dense(n, hidden, c.out[-1])


def _gated_count(ctx: InferCtx) -> int:
    d_in, hidden = ctx.x.shape[-1], ctx.params["hidden"]
    d_out = ctx.params["out"] or d_in
    b = 1 if ctx.params["bias"] else 0
    return 2 * (d_in * hidden + hidden * b) + hidden * d_out + d_out * b


@op("gated_mlp", family="dense", params={
    "hidden": p_int("hidden width"),
    "out": p_int("output features (default: same as input)", None),
    "activation": p_enum("gate activation: silu gives SwiGLU, gelu (or gelu_tanh, Gemma) GeGLU", ("silu", "gelu", "gelu_tanh", "relu", "sigmoid"), "silu"),
    "bias": p_bool("biases on the three linears", False),
}, count=_gated_count, flops=lambda c: _mlp_flops(c, 2), kernels=5, products=3, example={"in": "x", "hidden": 11008, "activation": "silu"})
def gated_mlp(ctx: InferCtx) -> TensorType:
    """Gated FFN: (act(x W_gate) ⊙ x W_up) W_down — SwiGLU with silu, GeGLU with gelu (seed 002, Transformer FFN variants)."""
    d_in = _in_features(ctx)
    return ctx.x.with_last(ctx.params["out"] or d_in)


@op("embedding", family="dense", params={
    "num": p_int("vocabulary size (number of rows)"),
    "dim": p_int("embedding width"),
    "padding_idx": p_int("row that stays zero and gets no gradient", None, min=0),
    "tie": p_ref("look up in this other embedding node's table (one table, two lookups: shared source/target "
                 "embeddings); num and dim must equal its num and dim"),
}, count=lambda ctx: 0 if ctx.params.get("tie") else ctx.params["num"] * ctx.params["dim"],
    example={"in": "tokens", "num": 50257, "dim": 768})
def embedding(ctx: InferCtx) -> TensorType:
    """Lookup table: integer ids [...] -> vectors [..., dim] (seed 002, Transformer input embedding).

    params: weight [num, dim]; with ``tie: other`` none: the lookup reads ``other``'s weight (the
    Transformer shares one table between source and target embeddings, seed 002 "The Transformer
    Architecture"; Vaswani et al. 2017 §3.4), and the padding row is the other node's.
    """
    ctx.need_int(ctx.x, "token ids")
    pad = ctx.params["padding_idx"]
    if pad is not None and pad >= ctx.params["num"]:
        ctx.fail(f"padding_idx {pad} is outside the table (num {ctx.params['num']})", None, "padding_idx")
    _check_embedding_tie(ctx)
    return TensorType(ctx.x.shape + (ctx.params["dim"],), "float32")


def _check_embedding_tie(ctx: InferCtx) -> None:
    """An embedding tied to another reads that node's [num, dim] table: same op, same sizes, no own padding row."""
    name = ctx.params.get("tie")
    if not name:
        return
    tie = ctx.refs.get("tie")
    if tie is None:
        ctx.fail(f"tie target '{name}' has no known output", None, "tie")
    if tie.op != "embedding":
        ctx.fail(f"an embedding can only tie to another embedding, '{name}' is {tie.op}", None, "tie")
    if tie.params.get("tie"):
        ctx.fail(f"'{name}' is itself tied to '{tie.params['tie']}'", f"tie to '{tie.params['tie']}' directly", "tie")
    num, dim = tie.params["num"], tie.params["dim"]
    if (num, dim) != (ctx.params["num"], ctx.params["dim"]):
        ctx.fail(f"tied table shape mismatch: expected [{num}, {dim}] (the table of '{name}'), "
                 f"got [{ctx.params['num']}, {ctx.params['dim']}]", "num and dim must equal the tied embedding's", "tie")
    if ctx.params["padding_idx"] is not None:
        ctx.fail("padding_idx is set on a tied embedding", f"set padding_idx on '{name}', whose table this reads",
                 "padding_idx")
