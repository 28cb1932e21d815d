"""Mixture of experts: a learned router sends each token to its top-k experts (Switch, GShard, Mixtral).

Formula (seed 000, Transformers section, "mixtures-of-experts (Switch Transformers)"):
MoE(x) = Σ_{e=1}^{m} G_e(x) · E_e(x), with G(x) = TopK(softmax(x W_gᵀ [+ b_g])) nonzero for k experts
only; seed 002 ("Mixtral ... activating only a sparse subset of model parameters for each token").
"""

from __future__ import annotations

import math

from ..registry import InferCtx, op, p_bool, p_enum, p_float, p_int
from ..cost.rules import CostCtx, dense, rows
from ..types import TensorType, dims_equal, format_shape
from ._blockfn import block_param, declare_functions, function_params, infer_function
from .activation import ACTIVATIONS

_SCALAR = TensorType((), "float32")


def _expert_count(d: int, hidden: int, kind: str, bias: bool) -> int:
    """Parameters of one built-in expert over model width d."""
    if kind == "swiglu":  # gate [H, D], up [H, D], down [D, H]
        return 3 * d * hidden + (2 * hidden + d if bias else 0)
    return 2 * d * hidden + (hidden + d if bias else 0)  # up [H, D], down [D, H]


def _expert_modules(p: dict) -> int:
    """The experts with weights of their own, each run on its own tokens: the routed ones and the shared one."""
    return p["experts"] + bool(p["shared_expert"])


def _moe_count(ctx: InferCtx) -> int:
    p = ctx.params
    d, e = ctx.x.shape[-1], p["experts"]
    router = e * d + (e if p["router_bias"] else 0) + (e * d if p["noisy_gating"] else 0)
    if p["expert_block"] is not None:
        one = function_params(ctx, "expert_block")
        return router + _expert_modules(p) * one
    experts = e * _expert_count(d, p["hidden"], p["expert"], p["bias"])
    shared = _expert_count(d, p["shared_hidden"] or p["hidden"], p["expert"], p["bias"]) if p["shared_expert"] else 0
    return router + experts + shared


def _moe_flops(c: CostCtx) -> int:
    """Router 2·N·D·m, plus each token through its top_k experts (N·k expert rows; with a capacity at most
    m·capacity of them, so the count is then an upper bound), plus every token through the shared expert.

    Per row an ffn expert costs 2·(D·h + h·D), a swiglu one 2·(2·D·h + h·D); a block expert counts 0 here."""
    p, d, n = c.params, c.x[-1], rows(c.x)
    if p["expert_block"] is not None:
        return dense(n, d, p["experts"])
    gates = 2 if p["expert"] == "swiglu" else 1
    per_row = (lambda h: gates * dense(1, d, h) + dense(1, h, d))
    routed = n * p["top_k"]
    if p["capacity_factor"] is not None:
        routed = min(routed, p["experts"] * math.ceil(p["capacity_factor"] * n * p["top_k"] / p["experts"]))
    shared = n * per_row(p["shared_hidden"] or p["hidden"]) if p["shared_expert"] else 0
    return dense(n, d, p["experts"]) + routed * per_row(p["hidden"]) + shared


#: aten kernels of the routing (router product, softmax, top-k, counts, losses) and of one expert's dispatch
#: (gather its tokens, scatter its output back, weight by the gate) besides its products and activation
ROUTING_KERNELS, DISPATCH_KERNELS = 26, 3


def _moe_kernels(c: CostCtx) -> int:
    """:data:`ROUTING_KERNELS` + per expert (and the shared one) its dispatch and its own kernels: 3 products,
    silu and the gate product (swiglu) or 2 products and the activation (ffn); a block expert counted as 3.
    Counted with a TorchDispatchMode on the CPU lowering of the zoo's specs."""
    p = c.params
    one = DISPATCH_KERNELS + (5 if p["expert"] == "swiglu" and p["expert_block"] is None else 3)
    return ROUTING_KERNELS + _expert_modules(p) * one


def _moe_products(c: CostCtx) -> int:
    """The router's product and each expert's own (3 for swiglu, 2 for ffn): each expert runs on its tokens alone."""
    p = c.params
    return 1 + _expert_modules(p) * (3 if p["expert"] == "swiglu" else 2)


@op("moe", family="moe", flops=_moe_flops, kernels=_moe_kernels, products=_moe_products, params={
    "experts": p_int("number of experts m"),
    "top_k": p_int("experts per token (1 = Switch Transformer, 2 = GShard/Mixtral)", 2),
    "expert": p_enum("built-in expert: ffn = act(x W₁)W₂, swiglu = (silu(x W_gate) ⊙ x W_up) W_down", ("ffn", "swiglu"), "swiglu"),
    "hidden": p_int("hidden width of each built-in expert", None),
    "activation": p_enum("activation of the ffn expert (swiglu always gates with silu)", tuple(ACTIVATIONS), "gelu"),
    "bias": p_bool("biases on the built-in experts' linears", False),
    "expert_block": block_param("a block [tokens, D] -> [tokens, D] used as every expert (separate weights per expert)"),
    "capacity_factor": p_float("expert capacity = ceil(cf · tokens · top_k / experts); overflow tokens are dropped "
                               "(null: no capacity, nothing dropped)", None, min=0.0),
    "noisy_gating": p_bool("noisy top-k gating: add softplus(x W_noiseᵀ)·N(0,1) to the logits while training", False),
    "shared_expert": p_bool("one extra expert every token always goes through (DeepSeek-MoE style)", False),
    "shared_hidden": p_int("hidden width of the shared expert (default: hidden)", None),
    "router_bias": p_bool("bias on the router's linear", False),
    "normalize_top_k": p_bool("renormalize the k selected gate weights to sum to 1 (Mixtral); false keeps the softmax values", True),
}, outputs=("out", "aux_loss", "z_loss", "dropped_fraction"), count=_moe_count,
    example={"in": "x", "experts": 8, "top_k": 2, "expert": "swiglu", "hidden": 14336},
    shape_hint="moe takes x [batch, seq, d_model] or [tokens, d_model]")
def moe(ctx: InferCtx) -> dict[str, TensorType]:
    """Sparse mixture of experts over the last dim: out = Σ_{e ∈ TopK} g_e(x) · E_e(x) [+ shared(x)] (seed 000 "mixtures-of-experts"; seed 002, Mixtral).

    Router: logits = x W_gᵀ [+ b] over ``experts``; p = softmax(logits); the ``top_k`` largest are kept.
    x [B, T, D] or [N, D] -> out (same shape) plus three scalars:
    ``aux_loss`` = m · Σ_e f_e · P_e (Switch load balancing: f_e fraction of tokens whose top-1 is e,
    P_e mean router probability of e), ``z_loss`` = mean_tokens (logsumexp(logits))² (ST-MoE router
    z-loss) and ``dropped_fraction`` (share of token-expert assignments over capacity; 0 without one).
    params: router.weight [experts, D] (+ router.bias [experts]), router.w_noise [experts, D] (noisy_gating);
    experts.<i>.gate.weight [H, D] (swiglu), experts.<i>.up.weight [H, D], experts.<i>.down.weight [D, H]
    (+ biases [H]/[D] with bias: true); shared_expert.* with the same layout (hidden shared_hidden);
    with ``expert_block`` every expert (and the shared one) holds its own copy of that block's parameters.
    """
    x, p = ctx.x, ctx.params
    if x.rank not in (2, 3):
        ctx.fail(f"x must be [batch, seq, d_model] or [tokens, d_model], got {format_shape(x.shape)}", ctx.op.shape_hint)
    ctx.need_float(x)
    d = x.shape[-1]
    if not isinstance(d, int):
        ctx.fail(f"the model dim of x must be a concrete size, got '{d}'")
    if p["top_k"] > p["experts"]:
        ctx.fail(f"top_k must be at most experts: expected <= {p['experts']}, got {p['top_k']}",
                 "each token picks top_k distinct experts", "top_k")
    if p["capacity_factor"] is not None and p["capacity_factor"] <= 0:
        ctx.fail(f"capacity_factor must be > 0, got {p['capacity_factor']}", "use null for no capacity limit", "capacity_factor")
    if p["expert_block"] is None:
        if p["hidden"] is None:
            ctx.fail("moe needs 'hidden' (width of the built-in experts) or 'expert_block'", "hidden: 4 * d_model")
    else:
        for key in ("hidden", "shared_hidden"):
            if p[key] is not None:
                ctx.fail(f"'{key}' sizes the built-in experts; with expert_block the block sets its own sizes",
                         f"remove '{key}'", key)
        graph = p["expert_block"].graph
        if len(graph.inputs) != 1:
            ctx.fail(f"an expert block takes exactly one input (the routed tokens), '{p['expert_block']}' takes "
                     f"{len(graph.inputs)}", None, "expert_block")
        tokens = TensorType(("expert_tokens", d), x.dtype)
        out = next(iter(infer_function(ctx, "expert_block", {next(iter(graph.inputs)): tokens}, "expert").values()))
        if out.rank != 2 or out.shape[0] != "expert_tokens" or dims_equal(out.shape[-1], d) is not True:
            ctx.fail(f"an expert block must map [tokens, {d}] to [tokens, {d}], got {format_shape(out.shape)}",
                     "experts' outputs are summed back into the token stream", "expert_block")
    if p["shared_hidden"] is not None and not p["shared_expert"]:
        ctx.fail("shared_hidden is set but shared_expert is false", "set shared_expert: true", "shared_hidden")
    return {"out": x, "aux_loss": _SCALAR, "z_loss": _SCALAR, "dropped_fraction": _SCALAR}


declare_functions(moe, expert_block=None)
