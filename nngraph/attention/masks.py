"""Attention masks: a registry of pure-Python predicates in FlexAttention ``mask_mod`` style.

A mask says which (query, key) pairs may interact: ``M_ij = 0`` where the
predicate holds and ``-inf`` elsewhere, added to the scores before the softmax
(seed 002, "Masked Attention and Autoregressive Generation";
seed 000, "Different Types of Transformers": softmax((QKᵀ + M)/√d_k)V).

Every mask is ONE registered function ``fn(b, h, q_idx, kv_idx, **params) -> bool``
plus a parameter schema (:class:`~nngraph.registry.Param`), the graph inputs it
reads (``needs``) and the context values it reads (``uses``). The same function
serves every consumer: the front end validates specs with the schema, tests
build dense reference matrices by calling it with plain ints, and tensor back
ends call it with index tensors (FlexAttention ``mask_mod``) — so predicates are
written with ``&``, ``|``, comparisons and :func:`logical_not`, which work on
both Python bools and bool tensors. Adding a mask = one ``@register_mask``
function; YAML can use it at once::

    mask: causal
    mask: {type: sliding_window, window: 256}
    mask: {any: [{type: sliding_window, window: 64}, {type: global_tokens, positions: [0]}]}
    mask: {all: [causal, {not: {type: sliding_window, window: 8}}]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

from ..errors import did_you_mean
from ..params import check_value, param_schema
from ..registry import Param, p_bool, p_int, p_int_list
from .bands import Band, window_reach

#: graph inputs a mask may read, and the context values passed to predicates
MASK_INPUTS = ("lengths", "key_padding", "doc_ids")
CONTEXT = MASK_INPUTS + ("q_len", "kv_len")
COMBINATORS = ("all", "any", "not")
MAX_DEPTH = 16


@dataclass(frozen=True)
class Native:
    """What a mask leaf is in the terms fused attention ops take natively (no explicit mask tensor).

    ``causal``: keys j <= i only (SDPA ``is_causal``, ONNX ``is_causal``); ``window``: with ``causal``, keys
    i - window < j <= i (GroupQueryAttention ``local_window_size``); ``key_padding``: hide padded keys, read
    from the connected ``lengths`` / ``key_padding`` input. All False/None: the leaf hides nothing."""

    causal: bool = False
    window: int | None = None
    key_padding: bool = False

    @property
    def empty(self) -> bool:
        """The leaf hides nothing (mask: none)."""
        return self == Native()


@dataclass(frozen=True)
class MaskDef:
    """One registered mask: predicate, parameters, and what it reads."""

    name: str
    doc: str
    params: dict[str, Param]
    predicate: Callable[..., Any]
    needs: tuple[str, ...] = ()      # graph inputs, any ONE of which must be connected
    uses: tuple[str, ...] = ()       # context values passed to the predicate (subset of CONTEXT)
    self_only: bool = False          # queries and keys must index the same sequence
    reach: Callable[..., Any] | None = None  # params -> the Band that contains every visible pair (see bands)
    diagonal: bool | Callable[..., bool] = False  # every query sees its own position (for these params)
    table: Callable[..., list[list[int]]] | None = None  # (q_len, kv_len, **params) -> visible keys per row:
    #                                                 the mask has no pointwise tensor form, only this table
    native: Native | Callable[..., Native | None] | None = None  # what fused kernels take natively (else an
    #                                                 explicit mask tensor)

    def keeps_diagonal(self, params: dict[str, Any]) -> bool:
        """True if query i always sees key i under ``params`` (no row of this leaf is empty)."""
        return self.diagonal(**params) if callable(self.diagonal) else self.diagonal

    def native_form(self, params: dict[str, Any]) -> "Native | None":
        """How fused kernels express this leaf with ``params`` without a mask tensor (None: they cannot)."""
        return self.native(**params) if callable(self.native) else self.native


MASKS: dict[str, MaskDef] = {}


def register_mask(name: str, *, params: dict[str, Param] | None = None, needs: tuple[str, ...] = (),
                  uses: tuple[str, ...] = (), self_only: bool = False, reach: Callable[..., Any] | None = None,
                  diagonal: bool | Callable[..., bool] = False, table: Callable[..., list[list[int]]] | None = None,
                  native: Native | Callable[..., Native | None] | None = None,
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(b, h, q_idx, kv_idx, **params, **context)`` as mask ``name``, with every fact back ends use:

    * ``reach(**params)``: a :class:`~nngraph.attention.bands.Band` containing every pair the mask can make
      visible (banded kernels skip everything else); None: no band;
    * ``diagonal``: True (or ``fn(**params) -> bool``) when query i always sees key i — no row is ever fully
      masked, so fused kernels need not patch empty rows; False is the safe default;
    * ``table(q_len, kv_len, **params)``: for masks with no pointwise tensor form (BigBird's random rows), the
      sorted visible keys of every query row; tensor back ends gather from it;
    * ``native``: a :class:`Native` (or ``fn(**params) -> Native | None``) saying how fused kernels take the
      mask without a mask tensor (causal flag, causal window, key padding); None: only a mask tensor."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in MASKS or name in COMBINATORS:
            raise ValueError(f"mask '{name}' registered twice")
        clash = set(params or {}) & (set(CONTEXT) | {"type"})
        if clash or not set(uses) <= set(CONTEXT) or not set(needs) <= set(MASK_INPUTS):
            raise ValueError(f"mask '{name}': bad params/uses/needs {clash or uses or needs}")
        MASKS[name] = MaskDef(name, (fn.__doc__ or "").strip(), dict(params or {}), fn, needs, uses, self_only, reach,
                              diagonal, table, native)
        return fn

    return deco


def logical_not(v: Any) -> Any:
    """``not v`` for Python bools and bool tensors alike.

    A tensor's own ``logical_not`` (duck-typed: the front end imports no torch) rather than ``v ^ True``,
    which a tracer cannot record for a tensor (the ONNX export gets a ``Not``)."""
    method = getattr(v, "logical_not", None)
    return method() if method is not None else v ^ True


# ----- the masks ------------------------------------------------------------
@register_mask("none", diagonal=True, native=Native())
def none(b, h, q_idx, kv_idx):
    """No mask: every query sees every key (seed 002, "Self-Attention")."""
    return kv_idx >= 0


@register_mask("causal", diagonal=True, native=Native(causal=True))
def causal(b, h, q_idx, kv_idx):
    """Causal: key j visible to query i iff j <= i, M_ij = -inf for j > i (seed 002, "Masked Attention")."""
    return kv_idx <= q_idx


@register_mask("key_padding", needs=("lengths", "key_padding"), uses=("lengths", "key_padding"),
               native=Native(key_padding=True))
def key_padding(b, h, q_idx, kv_idx, lengths=None, key_padding=None):
    """Key padding: hide padded keys. From ``lengths`` [B] (key j valid iff j < lengths[b]) or a
    ``key_padding`` [B, S] bool input where True marks padding (PyTorch convention)
    (seed 002, "Masked Attention": -inf for disallowed pairs)."""
    if lengths is not None:
        return kv_idx < lengths[b]
    return logical_not(key_padding[b][kv_idx])


@register_mask("sliding_window", params={
    "window": p_int("keys per query: causal sees the last `window` positions incl. itself; symmetric sees window//2 each side"),
    "causal": p_bool("look back only (Mistral-style) instead of both sides (Longformer-style)", True),
}, reach=lambda window, causal=True: window_reach(window, causal), diagonal=True,
    native=lambda window, causal=True: Native(causal=True, window=int(window)) if causal else None)
def sliding_window(b, h, q_idx, kv_idx, window, causal=True):
    """Local windowed attention: causal 0 <= i-j < w; symmetric |i-j| <= w//2
    (seed 002, "Global and Local Attention"; Longformer, Beltagy et al. 2020).

    Causal (Mistral): query i sees the w keys i-w+1..i, itself included (w = 1: only itself), so it
    also hides the future. Symmetric (Longformer): w//2 keys on each side plus itself, 2·(w//2)+1 keys
    (an even w rounds down). Queries near the start see fewer keys (nothing is padded in). Padding is a
    separate mask:
    ``{all: [{type: sliding_window, window: w}, key_padding]}``."""
    d = q_idx - kv_idx
    if causal:
        return (d >= 0) & (d < window)
    return (d <= window // 2) & (d >= -(window // 2))


@register_mask("strided", params={
    "stride": p_int("stride l: the local part covers l positions, the strided part every l-th one"),
    "part": Param("enum", "which Sparse Transformer pattern: local, strided, or both (their union)", "both",
                  choices=("both", "local", "strided")),
    "causal": p_bool("only keys at or before the query", True),
}, reach=lambda stride, part="both", causal=True: (
    None if part != "local" else Band(stride - 1, 0) if causal else Band(stride - 1, stride - 1)), diagonal=True)
def strided(b, h, q_idx, kv_idx, stride, part="both", causal=True):
    """Sparse Transformer strided pattern (Child et al. 2019; seed 002, "Sparse Transformers"):
    local A1 = {j : 0 <= i-j < l}, strided A2 = {j : (i-j) mod l = 0}; ``both`` is A1 ∪ A2.
    Non-causal uses |i-j| < l for the local part."""
    d = q_idx - kv_idx
    local = ((d >= 0) & (d < stride)) if causal else ((d < stride) & (d > -stride))
    step = (d % stride) == 0
    if causal:
        step = step & (d >= 0)
    return local if part == "local" else step if part == "strided" else local | step


@register_mask("dilated", params={
    "window": p_int("keys per query (as in sliding_window), counted in dilated steps"),
    "dilation": p_int("gap d between attended keys"),
    "causal": p_bool("look back only", True),
}, reach=lambda window, dilation, causal=True: window_reach(window, causal, dilation),
    diagonal=lambda window, dilation, causal=True: (window or 0) >= 1)
def dilated(b, h, q_idx, kv_idx, window, dilation, causal=True):
    """Dilated sliding window (Longformer, Beltagy et al. 2020; seed 002, "Global and Local Attention"):
    (i-j) mod d = 0 and causal 0 <= i-j < w·d, or symmetric |i-j| <= (w//2)·d."""
    d = q_idx - kv_idx
    on_grid = (d % dilation) == 0
    if causal:
        return on_grid & (d >= 0) & (d < window * dilation)
    reach = (window // 2) * dilation
    return on_grid & (d <= reach) & (d >= -reach)


@register_mask("global_tokens", params={
    "positions": p_int_list("token positions that attend everywhere and are attended by all", min=0),
}, reach=lambda positions: Band(rows=frozenset(positions), cols=frozenset(positions)))
def global_tokens(b, h, q_idx, kv_idx, positions):
    """Global tokens (Longformer [CLS]; seed 002, "Global and Local Attention"): i or j in positions.
    Alone it allows only the global rows/columns; combine with a window via ``any``."""
    out = kv_idx < 0  # False, of the right kind
    for p in positions:
        out = out | (q_idx == p) | (kv_idx == p)
    return out


@register_mask("random", params={
    "per_row": p_int("random keys per query row (r)"),
    "seed": p_int("seed of the deterministic generator (splitmix64)", 0, min=0),
}, uses=("kv_len",), table=lambda q_len, kv_len, per_row, seed=0: random_table(q_len, kv_len, per_row, seed))
def random(b, h, q_idx, kv_idx, per_row, seed=0, kv_len=None):
    """BigBird random attention (Zaheer et al. 2020; seed 002, "Global and Local Attention"): query i
    sees ``per_row`` distinct keys drawn by :func:`random_row` from (seed, i), the same for every
    batch row and head. Tensor back ends gather from :func:`random_table` (token-level, not blocks)."""
    return kv_idx in random_row(int(q_idx), int(kv_len), per_row, seed)


@register_mask("document", needs=("doc_ids",), uses=("doc_ids",), self_only=True, diagonal=True)
def document(b, h, q_idx, kv_idx, doc_ids):
    """Block-diagonal document mask for packed sequences: doc_ids[b][i] == doc_ids[b][j]
    (seed 000, "Different Types of Transformers": M_ij = -inf for disallowed pairs)."""
    return doc_ids[b][q_idx] == doc_ids[b][kv_idx]


@register_mask("prefix_lm", params={"prefix": p_int("length of the bidirectional prefix", min=0)}, diagonal=True)
def prefix_lm(b, h, q_idx, kv_idx, prefix):
    """Prefix LM (T5/UniLM): keys in the prefix are visible to all, the rest causally: j < p or j <= i
    (seed 002, "Masked Attention" and "T5: Text-to-Text Framework")."""
    return (kv_idx < prefix) | (kv_idx <= q_idx)


# ----- deterministic random rows (BigBird) ----------------------------------
_M64 = (1 << 64) - 1


def _splitmix64(state: int) -> tuple[int, int]:
    state = (state + 0x9E3779B97F4A7C15) & _M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return state, z ^ (z >> 31)


@lru_cache(maxsize=65536)
def random_row(q_idx: int, kv_len: int, per_row: int, seed: int) -> frozenset[int]:
    """The ``min(per_row, kv_len)`` distinct keys query ``q_idx`` sees: a partial Fisher-Yates
    shuffle of range(kv_len) driven by splitmix64 seeded with (seed, q_idx). Pure integer
    arithmetic, so every back end reproduces it bit for bit."""
    state = (seed * 0x100000001B3 + q_idx) & _M64
    swapped: dict[int, int] = {}
    picks = []
    for i in range(min(per_row, kv_len)):
        state, r = _splitmix64(state)
        j = i + r % (kv_len - i)
        vi, vj = swapped.get(i, i), swapped.get(j, j)
        swapped[i], swapped[j] = vj, vi
        picks.append(vj)
    return frozenset(picks)


def random_table(q_len: int, kv_len: int, per_row: int, seed: int) -> list[list[int]]:
    """Sorted random keys of every query row: ``[q_len][min(per_row, kv_len)]``."""
    return [sorted(random_row(q, kv_len, per_row, seed)) for q in range(q_len)]


# ----- parsing, checking, evaluation ----------------------------------------
@dataclass(frozen=True)
class MaskNode:
    """A normalized mask: a registered leaf with all params, or a combinator over children."""

    op: str                                   # "leaf", "all", "any", "not"
    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    children: tuple["MaskNode", ...] = ()

    def leaves(self) -> list["MaskNode"]:
        """Every registered mask used in the tree."""
        return [self] if self.op == "leaf" else [leaf for c in self.children for leaf in c.leaves()]


class MaskSpecError(ValueError):
    """A problem at a sub-path of a mask value."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path, self.message = path, message


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _unknown(kind: str, word: str, known: list[str]) -> str:
    guess = did_you_mean(word, known)
    return f"unknown {kind} '{word}'" + (f"; {guess}" if guess else "") + f" (known: {', '.join(known)})"


def parse_mask(value: Any, path: str = "", depth: int = 0, problems: list[tuple[str, str]] | None = None) -> MaskNode:
    """Normalize a mask value; problems go to ``problems`` (or raise :class:`MaskSpecError`)."""

    def bad(sub: str, msg: str) -> MaskNode:
        if problems is None:
            raise MaskSpecError(sub, msg)
        problems.append((sub, msg))
        return MaskNode("leaf", "none", {})

    if depth > MAX_DEPTH:
        return bad(path, f"mask nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        return bad(path, f"expected a mask name or mapping, got {value!r}")
    combos = [k for k in COMBINATORS if k in value]
    if combos:
        if len(value) != 1:
            return bad(path, f"a '{combos[0]}' mask has no other keys, got {', '.join(sorted(map(str, value)))}")
        key = combos[0]
        if key == "not":
            return MaskNode("not", children=(parse_mask(value["not"], _join(path, "not"), depth + 1, problems),))
        items = value[key]
        if not isinstance(items, list) or not items:
            return bad(_join(path, key), f"'{key}' takes a non-empty list of masks, got {items!r}")
        return MaskNode(key, children=tuple(parse_mask(v, _join(path, f"{key}.{i}"), depth + 1, problems)
                                            for i, v in enumerate(items)))
    name = value.get("type")
    if name is None:
        return bad(path, f"a mask mapping needs 'type' (one of {', '.join(MASKS)}) or one of {', '.join(COMBINATORS)}")
    if not isinstance(name, str) or name not in MASKS:
        return bad(_join(path, "type"), _unknown("mask type", str(name), list(MASKS) + list(COMBINATORS)))
    mdef = MASKS[name]
    params: dict[str, Any] = {}
    misspelt: set[str] = set()
    for key, raw in value.items():
        if key == "type":
            continue
        if key not in mdef.params:
            known = list(mdef.params)
            guess = did_you_mean(str(key), known)
            misspelt.update(k for k in known if guess and f"'{k}'" in guess)
            msg = (f"unknown parameter '{key}' of mask '{name}'" + (f"; {guess}" if guess else "") +
                   f" (known: {', '.join(known)})" if known else f"mask '{name}' takes no parameters, got '{key}'")
            bad(_join(path, key), msg)
            continue
        checked, errs = check_value(mdef.params[key], raw)
        for sub, msg in errs:
            bad(_join(_join(path, key), sub) if sub else _join(path, key), msg)
        params[key] = checked
    for key, p in mdef.params.items():
        if key not in params:
            if p.required and key not in value and key not in misspelt:
                bad(path, f"mask '{name}' needs parameter '{key}' ({p.doc}); write {{type: {name}, {key}: ...}}")
            params.setdefault(key, None if p.required else p.default)
    return MaskNode("leaf", name, params)


def check_mask(value: Any) -> list[tuple[str, str]]:
    """Checker for the ``mask`` param: every problem as (sub-path, message)."""
    problems: list[tuple[str, str]] = []
    parse_mask(value, problems=problems)
    return problems


def required_inputs(node: MaskNode) -> list[tuple[str, tuple[str, ...]]]:
    """(mask name, alternatives) for every graph input the tree needs."""
    return [(leaf.name or "", MASKS[leaf.name or ""].needs) for leaf in node.leaves() if MASKS[leaf.name or ""].needs]


def used_inputs(node: MaskNode) -> set[str]:
    """Graph inputs any mask in the tree can read."""
    return {i for leaf in node.leaves() for i in MASKS[leaf.name or ""].needs}


def predicate(value: Any) -> Callable[..., Any]:
    """``fn(b, h, q_idx, kv_idx, **context)`` for a mask value (string, mapping, or :class:`MaskNode`)."""
    node = value if isinstance(value, MaskNode) else parse_mask(value)
    if node.op == "leaf":
        mdef = MASKS[node.name or ""]
        fn, params, uses = mdef.predicate, node.params, mdef.uses
        return lambda b, h, q, kv, **ctx: fn(b, h, q, kv, **params, **{k: ctx.get(k) for k in uses})
    kids = [predicate(c) for c in node.children]
    if node.op == "not":
        return lambda b, h, q, kv, **ctx: logical_not(kids[0](b, h, q, kv, **ctx))

    def combine(b: Any, h: Any, q: Any, kv: Any, **ctx: Any) -> Any:
        out = kids[0](b, h, q, kv, **ctx)
        for k in kids[1:]:
            out = (out & k(b, h, q, kv, **ctx)) if node.op == "all" else (out | k(b, h, q, kv, **ctx))
        return out

    return combine


def dense_mask(value: Any, q_len: int, kv_len: int | None = None, b: int = 0, h: int = 0, **inputs: Any) -> list[list[bool]]:
    """The boolean [q_len, kv_len] matrix of a mask for batch row ``b`` and head ``h`` (plain Python)."""
    kv_len = q_len if kv_len is None else kv_len
    fn = predicate(value)
    ctx = {**inputs, "q_len": q_len, "kv_len": kv_len}
    return [[bool(fn(b, h, q, kv, **ctx)) for kv in range(kv_len)] for q in range(q_len)]


# ----- JSON Schema, generated from the registry -----------------------------
def _leaf_schemas() -> list[dict]:
    out: list[dict] = [{"enum": [n for n, m in MASKS.items() if not any(p.required for p in m.params.values())],
                        "description": "a mask without required parameters"}]
    for name, mdef in MASKS.items():
        props: dict[str, Any] = {"type": {"const": name}}
        props.update({k: param_schema(p) for k, p in mdef.params.items()})
        out.append({"type": "object", "description": mdef.doc.splitlines()[0] if mdef.doc else name,
                    "properties": props, "additionalProperties": False,
                    "required": ["type"] + [k for k, p in mdef.params.items() if p.required]})
    return out


def mask_schema(depth: int = 3) -> dict:
    """JSON Schema of a mask value; combinators are unrolled ``depth`` levels (deeper: any mapping)."""
    inner: dict = {"type": "object"}
    for _ in range(depth):
        inner = {"anyOf": _leaf_schemas() + [
            {"type": "object", "properties": {"all": {"type": "array", "minItems": 1, "items": inner}},
             "required": ["all"], "additionalProperties": False},
            {"type": "object", "properties": {"any": {"type": "array", "minItems": 1, "items": inner}},
             "required": ["any"], "additionalProperties": False},
            {"type": "object", "properties": {"not": inner}, "required": ["not"], "additionalProperties": False},
        ]}
    return inner


def mask_param(default: Any = "none") -> Param:
    """The ``mask`` parameter: schema and checker generated from the mask registry."""
    return Param("custom", "attention mask: a name (causal), {type: NAME, ...params}, or {all|any: [...]}, {not: ...}; "
                 f"masks: {', '.join(MASKS)}", default, schema=mask_schema(), check=check_mask)
