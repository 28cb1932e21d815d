"""Layout ops: pad, roll, tile, expand, stack/unstack, squeeze/unsqueeze and einsum.

They move or copy elements without arithmetic (einsum aside); symbolic dims flow
through the shape rules with the :mod:`nngraph.types` dim helpers.
"""

from __future__ import annotations

import re
from typing import Any

from ..registry import InferCtx, Param, op, p_enum, p_float, p_int, p_int_list, p_str
from ..types import Dim, TensorType, broadcast_dim, dim_add, dim_mul, dims_differ, format_shape
from ._shapes import norm_axis
from .tensor import SHAPE_PARAM, names_check, same_dtype

PAD_MODES = ("constant", "reflect", "replicate")


def _dim_list(ctx: InferCtx, name: str, rank: int) -> list[int]:
    """The int-or-list param ``name`` as distinct non-negative axes of a rank-``rank`` tensor."""
    value = ctx.params[name]
    axes = [norm_axis(ctx, d, rank, name) for d in (value if isinstance(value, list) else [value])]
    if len(set(axes)) != len(axes):
        ctx.fail(f"{name} {value} names a dim twice", None, name)
    return axes


@op("pad", family="layout", params={
    "pads": p_int_list("(before, after) pairs, last dim first (torch F.pad order): [2, 0] pads the last dim "
                       "by 2 on the left only (causal), [1, 1, 2, 2] the last two dims", min=0),
    "mode": p_enum("constant fills with value; reflect mirrors without the edge; replicate repeats the edge",
                   PAD_MODES, "constant"),
    "value": p_float("fill value of constant padding", 0.0),
}, example={"in": "x", "pads": [2, 0]})
def pad(ctx: InferCtx) -> TensorType:
    """Pad the last len(pads)/2 dims: out[d] = before + x[d] + after."""
    x, pads, mode = ctx.x, ctx.params["pads"], ctx.params["mode"]
    n = len(pads) // 2
    if not pads or len(pads) % 2 or n > x.rank:
        ctx.fail(f"pads needs (before, after) pairs for at most {x.rank} dims, got {pads}", None, "pads")
    if mode != "constant" and not (n <= 3 and n + 1 <= x.rank <= n + 2):
        ctx.fail(f"{mode} padding of {n} dim(s) needs a rank {n + 1} or {n + 2} input, got {format_shape(x.shape)}",
                 "reflect/replicate pad the last 1-3 dims of a (batch, channels, ...) tensor", "mode")
    shape = list(x.shape)
    for i in range(n):
        before, after = pads[2 * i], pads[2 * i + 1]
        size = shape[-1 - i]
        if mode == "reflect" and isinstance(size, int) and max(before, after) >= size:
            ctx.fail(f"reflect padding {max(before, after)} must be below the dim's size {size}", None, "pads")
        shape[-1 - i] = dim_add(size, before + after)
    return TensorType(tuple(shape), x.dtype)


@op("roll", family="layout", params={
    "shifts": p_int_list("shift per dim (positive: towards higher indices)"),
    "dims": p_int_list("dims to roll, one per shift"),
}, example={"in": "x", "shifts": [-3, -3], "dims": [1, 2]})
def roll(ctx: InferCtx) -> TensorType:
    """Cyclic shift: out[(i + shift) mod n] = x[i] along each of ``dims`` (Swin's shifted windows)."""
    if len(ctx.params["shifts"]) != len(ctx.params["dims"]):
        ctx.fail(f"{len(ctx.params['shifts'])} shifts for {len(ctx.params['dims'])} dims", "give one shift per dim",
                 "shifts")
    _dim_list(ctx, "dims", ctx.x.rank)
    return ctx.x


@op("tile", family="layout", params={
    "reps": p_int_list("copies per dim (aligned from the right; extra leading entries add dims)", min=1),
}, example={"in": "x", "reps": [1, 4, 1]})
def tile(ctx: InferCtx) -> TensorType:
    """Repeat the whole tensor: out[d] = x[d]·reps[d] (numpy tile / torch repeat)."""
    x, reps = ctx.x, ctx.params["reps"]
    shape = (1,) * (len(reps) - x.rank) + x.shape
    reps = [1] * (len(shape) - len(reps)) + list(reps)
    return TensorType(tuple(dim_mul(d, r) for d, r in zip(shape, reps)), x.dtype)


@op("expand", family="layout", params={"shape": SHAPE_PARAM}, example={"in": "bias", "shape": ["batch", -1, -1]})
def expand(ctx: InferCtx) -> TensorType:
    """Broadcast size-1 dims to ``shape`` without copying (-1 keeps a dim; extra leading dims are new)."""
    x, target = ctx.x, list(ctx.params["shape"])
    if len(target) < x.rank:
        ctx.fail(f"shape {format_shape(target)} has fewer dims than the input {format_shape(x.shape)}", None, "shape")
    lead = len(target) - x.rank
    out: list[Dim] = list(target[:lead])
    if -1 in out or 0 in out:
        ctx.fail("new leading dims need a size, not -1 or 0", None, "shape")
    for have, want in zip(x.shape, target[lead:]):
        if want in (-1, 0):
            out.append(have)
        elif have != 1 and dims_differ(have, want):
            ctx.fail(f"cannot expand {format_shape(x.shape)} to {format_shape(target)}: only size-1 dims expand",
                     None, "shape")
        else:
            out.append(want)
    return TensorType(tuple(out), x.dtype)


@op("stack", family="layout", inputs=("*xs",), params={"dim": p_int("new dim's position", 0, min=None)},
    example={"in": ["a", "b"], "dim": 1})
def stack(ctx: InferCtx) -> TensorType:
    """Join same-shape tensors along a new dim ``dim`` (its size: the number of inputs)."""
    types = ctx.variadic
    same_dtype(ctx, types)
    for t in types[1:]:
        if t.rank != types[0].rank or any(dims_differ(a, b) for a, b in zip(t.shape, types[0].shape)):
            ctx.fail(f"inputs have different shapes: {format_shape(types[0].shape)} and {format_shape(t.shape)}")
    axis = norm_axis(ctx, ctx.params["dim"], types[0].rank + 1)
    shape = list(types[0].shape)
    shape.insert(axis, len(types))
    return TensorType(tuple(shape), types[0].dtype)


def _unstack_outputs(params: dict) -> tuple[str, ...]:
    names = params.get("names")
    return tuple(str(n) for n in names) if isinstance(names, list) and names else ("out0",)


@op("unstack", family="layout", params={
    "dim": p_int("dim to take apart", 0, min=None),
    "names": Param("custom", "one output name per index along dim", schema={"type": "array", "items": {"type": "string"}},
                   check=names_check),
}, outputs=_unstack_outputs, example={"in": "pair", "dim": 1, "names": ["left", "right"]})
def unstack(ctx: InferCtx) -> dict[str, TensorType]:
    """Split along ``dim`` into its slices, dropping the dim: one named output per index (``node.name``)."""
    x, names = ctx.x, _unstack_outputs(ctx.params)
    axis = norm_axis(ctx, ctx.params["dim"], x.rank)
    ctx.need_dim(x.shape[axis], len(names), f"dim {axis} must have one slice per name", "names")
    piece = TensorType(x.shape[:axis] + x.shape[axis + 1:], x.dtype)
    return {name: piece for name in names}


@op("squeeze", family="layout", params={"dim": Param("ints", "dim or dims of size 1 to drop", min=None)},
    example={"in": "x", "dim": 1})
def squeeze(ctx: InferCtx) -> TensorType:
    """Drop the given size-1 dims."""
    x = ctx.x
    axes = _dim_list(ctx, "dim", x.rank)
    for a in axes:
        if x.shape[a] != 1:
            ctx.fail(f"dim {a} of {format_shape(x.shape)} has size {x.shape[a]}, not 1", "squeeze only size-1 dims", "dim")
    return TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)


@op("unsqueeze", family="layout", params={"dim": p_int("position of the new size-1 dim", min=None)},
    example={"in": "x", "dim": 1})
def unsqueeze(ctx: InferCtx) -> TensorType:
    """Insert a size-1 dim at ``dim`` (-1: last)."""
    x = ctx.x
    axis = norm_axis(ctx, ctx.params["dim"], x.rank + 1)
    return TensorType(x.shape[:axis] + (1,) + x.shape[axis:], x.dtype)


_TERM = re.compile(r"[a-zA-Z]*(?:\.\.\.)?[a-zA-Z]*")
_ELLIPSIS = "..."


def _einsum_terms(ctx: InferCtx, n_inputs: int) -> tuple[list[str], str]:
    """The equation's input terms and output term, checked for form (letters, at most one '...' each)."""
    eq = ctx.params["equation"].replace(" ", "")
    if eq.count("->") != 1:
        ctx.fail(f"equation {eq!r} needs one '->' and the output's letters", "e.g. 'bhid,bhjd->bhij'", "equation")
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    if not all(_TERM.fullmatch(t) for t in terms + [out]):
        ctx.fail(f"equation {eq!r}: a term is letters with at most one '...'", "e.g. '...ij,...jk->...ik'", "equation")
    if len(terms) != n_inputs:
        ctx.fail(f"equation {eq!r} has {len(terms)} input terms for {n_inputs} inputs", None, "equation")
    letters = out.replace(_ELLIPSIS, "")
    if len(set(letters)) != len(letters):
        ctx.fail(f"output term {out!r} repeats a letter", "a repeated letter takes a diagonal in an input term only",
                 "equation")
    return terms, out


def _split_term(ctx: InferCtx, i: int, term: str, t: TensorType) -> tuple[list[tuple[str, Dim]], tuple[Dim, ...]]:
    """Input ``i``'s (letter, dim) pairs and the dims its '...' covers (rank minus its letters)."""
    head, ell, tail = term.partition(_ELLIPSIS)
    n_letters = len(head) + len(tail)
    if n_letters > t.rank or (not ell and n_letters != t.rank):
        ctx.fail(f"term {term!r} has {n_letters} letters for input {i} of rank {t.rank} {format_shape(t.shape)}",
                 "use '...' for dims the letters do not name" if n_letters < t.rank else None, "equation")
    shape = t.shape
    middle = shape[len(head):t.rank - len(tail)]
    return list(zip(head, shape[:len(head)])) + list(zip(tail, shape[t.rank - len(tail):])), tuple(middle)


def _broadcast_ellipsis(ctx: InferCtx, covered: list[tuple[Dim, ...]]) -> tuple[Dim, ...]:
    """NumPy broadcasting of the dims each input's '...' covers, right-aligned."""
    out: list[Dim] = []
    for dims in covered:
        longer, shorter = (list(dims), out) if len(dims) >= len(out) else (out, list(dims))
        pad = len(longer) - len(shorter)
        merged = longer[:pad]
        for a, b in zip(longer[pad:], shorter):
            d = broadcast_dim(a, b)
            if d is None:
                ctx.fail(f"the dims '...' covers do not broadcast: {format_shape(tuple(out))} and {format_shape(dims)}",
                         None, "equation")
            merged.append(d)
        out = merged
    return tuple(out)


@op("einsum", family="layout", inputs=("*xs",), params={
    "equation": p_str("Einstein summation, explicit output: 'bhid,bhjd->bhij'; '...' for unnamed (broadcast) dims, "
                      "a repeated letter in a term for a diagonal ('ii->i', 'bii->b')"),
}, example={"in": ["q", "k"], "equation": "bhid,bhjd->bhij"})
def einsum(ctx: InferCtx) -> TensorType:
    """Einstein summation: letters name dims; letters missing from the output are summed over.

    A letter repeated within a term takes the diagonal (its dims must be equal: 'ii->i' is the diagonal, 'ii->'
    the trace); '...' stands for the dims no letter names, broadcast across inputs like NumPy, kept where the
    output writes '...' and summed over where it does not (torch.einsum's rule).
    """
    types = ctx.variadic
    same_dtype(ctx, types)
    ctx.need_float(types[0])
    terms, out = _einsum_terms(ctx, len(types))
    sizes: dict[str, tuple[int, Dim]] = {}
    covered = []
    for i, (term, t) in enumerate(zip(terms, types)):
        pairs, middle = _split_term(ctx, i, term, t)
        covered.append(middle)
        for letter, d in pairs:
            first = sizes.setdefault(letter, (i, d))
            if dims_differ(first[1], d):
                ctx.fail(f"letter {letter!r} is {first[1]} in input {first[0]} and {d} in input {i}", None, "equation")
    missing = [c for c in out.replace(_ELLIPSIS, "") if c not in sizes]
    if missing:
        ctx.fail(f"output letters {''.join(missing)!r} appear in no input term", None, "equation")
    middle = _broadcast_ellipsis(ctx, covered)  # checked even where the output sums them
    ctx.meta["ellipsis_rank"] = len(middle)  # the back ends' count of dims '...' stands for
    head, ell, tail = out.partition(_ELLIPSIS)
    return TensorType(tuple(sizes[c][1] for c in head) + (middle if ell else ()) + tuple(sizes[c][1] for c in tail), types[0].dtype)
