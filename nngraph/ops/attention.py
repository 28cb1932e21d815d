"""Multi-head attention: self and cross, grouped-query/multi-query, pluggable masks and positions.

One ``attention`` node carries its mask and position specs; a lowering pass picks the kernel
(reference math, SDPA, FlexAttention, ONNX Attention) per target. Masks come from the registry in
:mod:`nngraph.attention.masks`, positions from :mod:`nngraph.attention.positions`; shape inference
stores the resolved description (:mod:`nngraph.attention.resolved`) in ``node.meta["attention"]``.
"""

from __future__ import annotations

from typing import Any

from ..registry import InferCtx, op, p_float, p_int, p_ref
from ..types import TensorType, dims_differ, format_shape, is_int
from ..attention import masks
from ..attention import positions
from ..attention.layout import head_layout, model_dim, projection_count, projection_params
from ..attention.resolved import META_KEY, resolve, resolved_of
from ..cost.rules import CostCtx, dense, visible_pairs

ATTN_INPUTS = ("x", "context?", "lengths?", "key_padding?", "doc_ids?", "positions?")


def _parsed(ctx: InferCtx) -> tuple[masks.MaskNode, str, dict[str, Any]]:
    try:
        mask = masks.parse_mask(ctx.params["mask"])
    except masks.MaskSpecError as err:
        ctx.fail(f"mask{'.' + err.path if err.path else ''}: {err.message}", None, "mask")
    try:
        pname, pparams = positions.parse_position(ctx.params["position"])
    except ValueError as err:
        ctx.fail(f"position: {err}", None, "position")
    return mask, pname, pparams


def _check_mask_inputs(ctx: InferCtx, mask: masks.MaskNode, x: TensorType, kv_len: Any, cross: bool) -> None:
    """Every graph input a mask reads is connected with the right shape; nothing unused is connected."""
    connected = {k for k in masks.MASK_INPUTS if ctx.inputs.get(k) is not None}
    for name, alternatives in masks.required_inputs(mask):
        have = [a for a in alternatives if a in connected]
        if not have:
            ctx.fail(f"mask '{name}' needs graph input {' or '.join(repr(a) for a in alternatives)} connected to this node",
                     f"pass it by name: in: {{x: ..., {alternatives[0]}: {alternatives[0]}}}", "mask")
        if len(have) > 1:
            ctx.fail(f"mask '{name}' reads one of {', '.join(have)}, but all of them are connected",
                     "connect only one", "mask")
    unused = connected - masks.used_inputs(mask)
    if unused:
        first = sorted(unused)[0]
        ctx.fail(f"input '{first}' is connected but no mask reads it",
                 "add the mask that uses it (key_padding for lengths/key_padding, document for doc_ids) or disconnect it",
                 first)
    batch = x.shape[0]
    if cross and any(masks.MASKS[leaf.name or ""].self_only for leaf in mask.leaves()):
        ctx.fail("the document mask compares doc_ids of queries and keys, so it needs self-attention (no context)",
                 None, "mask")
    lengths, kp, docs = (ctx.inputs.get(k) for k in masks.MASK_INPUTS)
    if lengths is not None:
        if lengths.rank != 1 or not is_int(lengths.dtype):
            ctx.fail(f"lengths must be an integer [batch] tensor, got {lengths}", "declare it {shape: [batch], dtype: int64}",
                     "lengths")
        ctx.need_dim(lengths.shape[0], batch, "batch dim of lengths", "lengths")
    if kp is not None:
        if kp.rank != 2 or kp.dtype != "bool":
            ctx.fail(f"key_padding must be a bool [batch, keys] tensor (True = padding), got {kp}",
                     "declare it {shape: [batch, seq], dtype: bool}", "key_padding")
        ctx.need_dim(kp.shape[0], batch, "batch dim of key_padding", "key_padding")
        ctx.need_dim(kp.shape[1], kv_len, "key dim of key_padding (the key sequence length)", "key_padding")
    if docs is not None:
        if docs.rank != 2 or not is_int(docs.dtype):
            ctx.fail(f"doc_ids must be an integer [batch, seq] tensor, got {docs}",
                     "declare it {shape: [batch, seq], dtype: int64}", "doc_ids")
        ctx.need_dim(docs.shape[0], batch, "batch dim of doc_ids", "doc_ids")
        ctx.need_dim(docs.shape[1], x.shape[1], "sequence dim of doc_ids", "doc_ids")


def _check_positions(ctx: InferCtx, x: TensorType, pname: str) -> None:
    """A ``positions`` input: integer [batch, seq] ids read by the node's position encoding (so not ``none``)."""
    ids = ctx.inputs.get("positions")
    if ids is None:
        return
    if pname == "none":
        ctx.fail("input 'positions' is connected but the node has no position encoding that reads it (position: none)",
                 "set position (rope, alibi, t5_bias, shaw, ...) or disconnect positions; absolute positions go "
                 "through position_embedding's own positions input", "positions")
    if ids.rank != 2 or not is_int(ids.dtype):
        ctx.fail(f"positions must be an integer [batch, seq] tensor of position ids, got {ids}",
                 "declare it {shape: [batch, seq], dtype: int64}", "positions")
    ctx.need_dim(ids.shape[0], x.shape[0], "batch dim of positions", "positions")
    ctx.need_dim(ids.shape[1], x.shape[1], "sequence dim of positions (one id per query)", "positions")


def _dims(ctx: InferCtx) -> tuple[int, int, TensorType | None]:
    """(D, Dc, context) with the context checks."""
    x = ctx.inputs["x"]
    assert x is not None
    d_model = model_dim(ctx, x, "x")
    context = ctx.inputs.get("context")
    if context is None:
        if ctx.params.get("context_dim") is not None:
            ctx.fail("context_dim is set but no context input is connected",
                     "connect keys/values by name: in: {x: ..., context: encoder_out}", "context_dim")
        return d_model, d_model, None
    if context.rank != 3:
        ctx.fail(f"context must be [batch, seq, features], got rank {context.rank} {format_shape(context.shape)}",
                 "cross-attention reads keys and values from a [batch, source_len, features] tensor", "context")
    d_ctx = model_dim(ctx, context, "context", "context")
    want = ctx.params.get("context_dim")
    if want is not None and want != d_ctx:
        ctx.fail(f"context feature dim: expected {want}, got {d_ctx} (context {format_shape(context.shape)})",
                 "set context_dim to the width of the context input, or project the context first", "context_dim")
    if dims_differ(context.shape[0], x.shape[0]):
        ctx.fail(f"batch dims differ: x {format_shape(x.shape)} vs context {format_shape(context.shape)}", None, "context")
    return d_model, d_ctx, context


def _count(ctx: InferCtx) -> int:
    d_model, d_ctx, _ = _dims(ctx)
    heads, kv, head_dim = head_layout(ctx, d_model)
    _, pname, pparams = _parsed(ctx)
    table = 0 if ctx.params.get("position_from") not in (None, ctx.node) else positions.POSITIONS[pname].count(pparams, heads, head_dim)
    return projection_count(d_model, d_ctx, heads, kv, head_dim, ctx.params) + table


def _table_shape(pname: str, pparams: dict, heads: int, head_dim: int) -> tuple:
    """What a position table's size depends on: the encoding, its params, heads and its size."""
    return pname, tuple(sorted(pparams.items())), heads, positions.POSITIONS[pname].count(pparams, heads, head_dim)


def _check_position_from(ctx: InferCtx, pname: str, pparams: dict, heads: int, head_dim: int) -> None:
    """``position_from: NODE``: this node reads NODE's learned position table (T5's one table per stack), so
    NODE must be an attention node with the same learnable encoding, parameters and heads (one table shape).
    A node naming itself owns the table (the first copy of a repeat whose copies all name copy 0)."""
    name = ctx.params.get("position_from")
    if not name or name == ctx.node:
        return
    src = ctx.refs.get("position_from")
    if src is None:
        ctx.fail(f"position_from target '{name}' has no known output", None, "position_from")
    if src.op != "attention":
        ctx.fail(f"position_from must name an attention node, '{name}' is {src.op}", None, "position_from")
    if src.params.get("position_from") not in (None, name):
        ctx.fail(f"'{name}' itself reads its table from '{src.params['position_from']}'",
                 f"name '{src.params['position_from']}' directly", "position_from")
    if not positions.POSITIONS[pname].learnable:
        ctx.fail(f"position '{pname}' has no learned table to share", "remove position_from", "position_from")
    s_name, s_params = positions.parse_position(src.params.get("position"))
    s_heads = src.params["heads"]
    s_dim = src.params.get("head_dim") or src.type.shape[-1] // s_heads
    mine, theirs = _table_shape(pname, pparams, heads, head_dim), _table_shape(s_name, s_params, s_heads, s_dim)
    if mine != theirs:
        ctx.fail(f"position_from '{name}': its table ({s_name} {s_params}, {s_heads} heads, {theirs[3]} params) differs "
                 f"from this node's ({pname} {pparams}, {heads} heads, {mine[3]} params)",
                 "share a table between nodes with the same position encoding, parameters and heads", "position_from")


def attention_flops(c: CostCtx) -> int:
    """Projections 2·B·(T·D·Hd + 2·S·Dc·Gd + T·Hd·D) plus scores and values 4·B·H·d·pairs.

    pairs = the (query, key) pairs the mask leaves visible (Σ over rows; T·S when ``c.dense_attention``:
    what a kernel that computes the whole score matrix executes). Grouped-query heads share keys and
    values but every query head still scores its own pairs."""
    a = resolved_of(c.node)
    b, t, s = c.x[0], c.x[1], (c.inputs.get("context") or c.x)[1]
    hd, gd = a.heads * a.head_dim, a.kv_heads * a.head_dim
    proj = dense(b * t, a.d_model, hd) + 2 * dense(b * s, a.d_ctx, gd) + dense(b * t, hd, a.d_model)
    pairs = t * s if c.dense_attention else visible_pairs(a.mask, t, s)
    return proj + 4 * b * a.heads * a.head_dim * pairs


#: aten kernels the torch lowering adds for a rotary position encoding (cos/sin tables rebuilt each call, the
#: rotation of q and k) and for a mask the fused kernel does not take natively (built from index comparisons)
ROTARY_KERNELS, MASK_KERNELS = 29, 12


def attention_kernels(c: CostCtx) -> int:
    """Kernels of one call: the projections (one fused qkv product, else q, k and v) and the output's, the fused
    attention kernel, plus :data:`ROTARY_KERNELS` for rotary positions and :data:`MASK_KERNELS` for a mask other
    than none or causal (counted with a TorchDispatchMode on the CPU lowering of the zoo's specs)."""
    a = resolved_of(c.node)
    projections = 1 if c.params.get("qkv") == "fused" and not a.cross else 3
    rotary = ROTARY_KERNELS if a.pos.rotary is not None else 0
    mask = MASK_KERNELS if a.mask_kind not in ("none", "causal") else 0
    return projections + 1 + 1 + rotary + mask


def attention_backward(c: CostCtx) -> int:
    """2·forward (every product's weight or second-operand gradient and its input gradient: Q, K and V depend on
    weights, so the scores and values always need both), less the input gradient of the query projection when x
    needs none and of the key/value projections when their source (context, else x) needs none."""
    a = resolved_of(c.node)
    b, t, s = c.x[0], c.x[1], (c.inputs.get("context") or c.x)[1]
    source = "context" if c.inputs.get("context") else "x"
    skip = (0 if c.needs_grad("x") else dense(b * t, a.d_model, a.heads * a.head_dim)) + \
        (0 if c.needs_grad(source) else 2 * dense(b * s, a.d_ctx, a.kv_heads * a.head_dim))
    return 2 * c.forward - skip


@op("attention", family="attention", inputs=ATTN_INPUTS, flops=attention_flops, backward=attention_backward,
    kernels=attention_kernels, params={
    **projection_params(),
    "context_dim": p_int("width of the context input for cross-attention (checked; default: read from context)", None),
    "scale": p_float("score scale (default 1/sqrt(head_dim); T5 uses 1.0)", None, min=0.0),
    "mask": masks.mask_param(),
    "position": positions.position_param(),
    "position_from": p_ref("read the learned position table of this attention node (same encoding, params and heads) "
                           "instead of owning one: T5's one relative-bias table per stack"),
}, count=_count, example={"in": "h", "heads": 12, "qkv": "fused", "mask": "causal"},
    shape_hint="attention takes x [batch, seq, d_model] and optionally context [batch, source_len, d_context]")
def attention(ctx: InferCtx) -> TensorType:
    """Multi-head scaled dot-product attention (self or cross, grouped-query) with pluggable masks and positions.

    out = Concat(head_1..head_H) W_O with head_i = softmax(Q_i K_iᵀ · scale + B + M) V_i, scale = 1/√d (seed 002, "Self-Attention",
    "Multi-Head Attention"; seed 000, "Different Types of Transformers" for B and M).

    Inputs: ``x`` [B, T, D] (queries; also keys/values for self-attention), ``context`` [B, S, Dc]
    (keys/values for cross-attention, seed 002 "Cross-Attention"), and the graph inputs masks read:
    ``lengths`` [B] int or ``key_padding`` [B, S] bool (True = padding), ``doc_ids`` [B, T] int; and
    ``positions`` [B, T] int, per-row position ids the position encoding reads instead of 0..T-1 (left
    padding, packed sequences): RoPE rotates row b's token t by positions[b, t]; ALiBi, T5 buckets and
    Shaw use pos_k - pos_q from the same ids (self-attention: keys are the queries' tokens). With a KV
    cache, each call passes the ids of its new tokens only. Output [B, T, D].

    Grouped-query attention: ``kv_heads`` G < H key/value heads, each shared by H/G query heads
    (G = 1: multi-query) — the multi-head formula with K_i, V_i taken from group ⌊i·G/H⌋.

    Params (torch names): ``qkv: fused`` → ``qkv.weight [(H+2G)·d, D]`` (+ ``qkv.bias``), rows q|k|v;
    ``qkv: separate`` → ``q.weight [H·d, D]``, ``k.weight [G·d, Dc]``, ``v.weight [G·d, Dc]`` (+ biases);
    ``out.weight [D, H·d]`` (+ ``out.bias [D]``); position tables: t5_bias ``rel_bias.weight
    [num_buckets, H]``, shaw ``rel_k [2k+1, d]`` (+ ``rel_v``), window_bias ``relative_position_bias_table
    [(2r-1)·(2c-1), H]``. GPT-2: fused with biases;
    LLaMA: separate, no biases, GQA, RoPE.
    """
    x = ctx.inputs["x"]
    assert x is not None
    d_model, _, context = _dims(ctx)
    heads, kv, head_dim = head_layout(ctx, d_model)
    if context is not None and ctx.params["qkv"] == "fused":
        ctx.fail("qkv: fused projects one input, but cross-attention reads q from x and k, v from context",
                 "use qkv: separate for cross-attention", "qkv")
    mask, pname, pparams = _parsed(ctx)
    kv_len = context.shape[1] if context is not None else x.shape[1]
    _check_mask_inputs(ctx, mask, x, kv_len, context is not None)
    if context is not None and pname != "none":
        ctx.fail(f"position '{pname}' encodes query-key offsets within one sequence; cross-attention takes position: none",
                 "add positions to the decoder and encoder inputs instead", "position")
    _check_positions(ctx, x, pname)
    length = positions.POSITIONS[pname].length
    if length is not None and isinstance(x.shape[1], int) and x.shape[1] != length(pparams):
        ctx.fail(f"position '{pname}' is defined for sequences of exactly {length(pparams)} tokens (one window), "
                 f"x has {x.shape[1]}", "fold the windows into the batch first (reshape + permute)", "position")
    problem = positions.POSITIONS[pname].check(pparams, heads, head_dim)
    if problem:
        ctx.fail(f"position.{problem[0]}: {problem[1]}", None, "position")
    _check_position_from(ctx, pname, pparams, heads, head_dim)
    connected = {k for k, t in ctx.inputs.items() if t is not None}
    ctx.meta[META_KEY] = resolve(ctx.params, d_model, context.shape[-1] if context is not None else d_model, connected)
    return x
