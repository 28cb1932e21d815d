"""Position encodings inside attention: a registry, each entry declared by where it acts.

kinds (what a back end does with it):

- ``input_transform``: changes the attention input before the projections;
- ``qk_transform``: rewrites queries and keys after the projections (RoPE);
- ``score_bias``: adds a term to the scores QKᵀ before the softmax
  (seed 000, "Different Types of Transformers": softmax((QKᵀ + B)/√d_k)V).

Absolute encodings (learned, sinusoidal) are added to the embeddings by the
``position_embedding`` op, not here. Each entry has a parameter schema, a
shape check against (heads, head_dim), a learnable-parameter count, and the
pure-Python formula a back end implements (tested against published values).
YAML: ``position: alibi`` or ``position: {type: rope, base: 10000}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from inspect import cleandoc
from typing import Any, Callable

from ..errors import did_you_mean
from ..params import check_value, param_schema
from ..registry import Param, p_bool, p_enum, p_float, p_int

KINDS = ("input_transform", "qk_transform", "score_bias")
ABSOLUTE = ("learned", "sinusoidal", "absolute")


@dataclass(frozen=True)
class PositionDef:
    """One registered position encoding."""

    name: str
    kind: str
    doc: str
    params: dict[str, Param]
    count: Callable[[dict, int, int], int]                           # (params, heads, head_dim) -> learnable params
    check: Callable[[dict, int, int], tuple[str, str] | None]        # -> (param, problem) or None
    learnable: bool = False                      # the term has parameters (gradients flow into a table)
    query_bias: bool = False                     # the score term reads the queries (q·a_ij), not positions only
    value_term: Callable[[dict], bool] = lambda p: False   # params -> the output adds Σ_j p_ij a^V_ij
    value_doc: str = ""                                    # what that value term is (for plan explanations)
    rotary: Callable[[dict, int], int] | None = None       # (params, head_dim) -> rotated dims, for a
    #                                              qk_transform that is a rotary embedding fused ops take natively
    score: Callable[..., Any] | None = None      # score(h, q_idx, kv_idx, **params) -> B[h, i, j]: a pointwise
    #                                              score_bias every back end derives its forms from
    length: Callable[[dict], int] | None = None  # params -> the one sequence length it is defined for (a window)

    @property
    def score_bias(self) -> bool:
        """Back-end hook: the encoding adds a term B to the scores (before the softmax)."""
        return self.kind == "score_bias"

    @property
    def qk_transform(self) -> bool:
        """Back-end hook: the encoding rewrites queries and keys after the projections."""
        return self.kind == "qk_transform"


POSITIONS: dict[str, PositionDef] = {}


def register_position(name: str, kind: str, params: dict[str, Param] | None = None, doc: str = "",
                      count: Callable[[dict, int, int], int] | None = None,
                      check: Callable[[dict, int, int], tuple[str, str] | None] | None = None, *,
                      learnable: bool = False, query_bias: bool = False,
                      value_term: Callable[[dict], bool] | None = None, value_doc: str = "",
                      rotary: Callable[[dict, int], int] | None = None,
                      score: Callable[..., Any] | None = None,
                      length: Callable[[dict], int] | None = None) -> None:
    """Register a position encoding with its back-end hooks: ``kind`` (where it acts), ``learnable`` (it has
    parameters), ``query_bias`` (its score term reads the queries), ``value_term(params)`` (it also adds a
    term to the output, so it needs the attention weights) and ``rotary(params, head_dim)`` (a rotary
    embedding: the rotated dims; fused ops with a rotary option take it natively), ``length(params)`` (the
    only query/key length it is defined for, checked by shape inference: a window's token count).

    ``score(h, q_idx, kv_idx, **params)``: a ``score_bias`` that is a pointwise formula B[h, i, j] of the head
    and the absolute positions, nothing learned. Like a mask predicate it is duck-typed (operators, ``abs``
    and the arguments' own methods), so it runs on ints and on tensors; a back end derives every form it
    needs (dense bias, FlexAttention score_mod, banded tiles) from it and needs no hooks of its own."""
    if name in POSITIONS or kind not in KINDS:
        raise ValueError(f"position '{name}': duplicate or bad kind {kind}")
    if score is not None and (kind != "score_bias" or learnable or query_bias or value_term):
        raise ValueError(f"position '{name}': a score formula is a score_bias of positions only "
                         f"(not learnable, no query or value term)")
    POSITIONS[name] = PositionDef(name, kind, doc, dict(params or {}), count or (lambda p, h, d: 0),
                                  check or (lambda p, h, d: None), learnable, query_bias,
                                  value_term or (lambda p: False), value_doc, rotary, score, length)


# ----- RoPE -----------------------------------------------------------------
#: RoPE's context-extension schemes (the ``scaling`` parameter; HF ``rope_type`` names where they exist)
ROPE_SCALINGS = ("none", "linear", "ntk", "yarn", "llama3")


def rotary_dim(head_dim: int, fraction: float = 1.0) -> int:
    """Dims rotated by RoPE: int(head_dim · fraction) (partial rotary, GPT-NeoX style)."""
    return int(head_dim * fraction)


def rope_inv_freq(head_dim: int, base: float = 10000.0, fraction: float = 1.0, scaling: str = "none",
                  factor: float = 1.0, original_max_len: int | None = None,
                  beta_fast: float = 32.0, beta_slow: float = 1.0,
                  low_freq_factor: float = 1.0, high_freq_factor: float = 4.0) -> list[float]:
    """Rotation frequencies θ_i = base^(-2i/d), i < d/2, d = rotary dims (Su et al. 2021; seed 002,
    "Rotary Positional Embeddings and Long-Context Extrapolation"); position m rotates pair i by m·θ_i.

    ``linear``: position interpolation (Chen et al. 2023; HF ``linear``): every θ_i / s.
    ``ntk``: NTK-aware scaling (bloc97 2023) raises the base to base·s^(d/(d-2)).
    ``yarn``: YaRN (Peng et al. 2023) blends interpolated θ_i/s and original θ_i with a linear ramp
    over the dims whose wavelength, in rotations over ``original_max_len``, lies between
    ``beta_fast`` and ``beta_slow`` (the HF ``_compute_yarn_parameters`` formula).
    ``llama3``: Llama 3.1's (HF ``llama3``): with L = ``original_max_len`` and wavelength λ_i = 2π/θ_i,
    θ_i is kept where λ_i < L/high_freq_factor, divided by s where λ_i > L/low_freq_factor, and
    between them (1 - g)·θ_i/s + g·θ_i with g = (L/λ_i - low_freq_factor)/(high_freq_factor - low_freq_factor)."""
    d = rotary_dim(head_dim, fraction)
    if scaling == "ntk":
        base = base * factor ** (d / (d - 2))
    pos_freqs = [base ** (2 * i / d) for i in range(d // 2)]
    if scaling == "linear":
        return [1.0 / (factor * f) for f in pos_freqs]
    if scaling == "llama3":
        assert original_max_len is not None
        return [_llama3_freq(1.0 / f, factor, original_max_len, low_freq_factor, high_freq_factor) for f in pos_freqs]
    if scaling != "yarn":
        return [1.0 / f for f in pos_freqs]
    assert original_max_len is not None

    def correction_dim(rotations: float) -> float:
        return d * math.log(original_max_len / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), d - 1)
    if low == high:
        high += 0.001
    out = []
    for i, f in enumerate(pos_freqs):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        extrapolate = 1.0 - ramp
        out.append((1.0 / (factor * f)) * (1 - extrapolate) + (1.0 / f) * extrapolate)
    return out


def _llama3_freq(theta: float, factor: float, original_max_len: int, low: float, high: float) -> float:
    """One Llama 3.1 frequency: kept (short wavelengths), θ/s (long ones), or the smooth blend between."""
    wavelen = 2 * math.pi / theta
    if wavelen < original_max_len / high:
        return theta
    if wavelen > original_max_len / low:
        return theta / factor
    smooth = (original_max_len / wavelen - low) / (high - low)
    return (1 - smooth) * theta / factor + smooth * theta


def rope_attention_factor(scaling: str = "none", factor: float = 1.0) -> float:
    """YaRN's multiplier on cos/sin (0.1·ln s + 1); 1 otherwise."""
    return 0.1 * math.log(factor) + 1.0 if scaling == "yarn" and factor > 1 else 1.0


def _rope_check(p: dict, heads: int, head_dim: int) -> tuple[str, str] | None:
    d = rotary_dim(head_dim, p["fraction"])
    if d < 2 or d % 2:
        return "fraction", (f"rotary dims must be even and >= 2: head_dim {head_dim} x fraction {p['fraction']} "
                            f"gives {d}")
    if p["scaling"] == "ntk" and d < 4:
        return "scaling", f"ntk scaling needs at least 4 rotary dims, got {d}"
    if p["scaling"] in ("yarn", "llama3") and p["original_max_len"] is None:
        return "original_max_len", f"{p['scaling']} scaling needs original_max_len (the training context length)"
    if p["scaling"] == "llama3" and not p["low_freq_factor"] < p["high_freq_factor"]:
        return "high_freq_factor", (f"llama3 scaling needs low_freq_factor < high_freq_factor, got "
                                    f"{p['low_freq_factor']} and {p['high_freq_factor']}")
    return None


register_position("rope", "qk_transform", {
    "base": p_float("θ base", 10000.0, min=1.0),
    "fraction": p_float("fraction of head_dim that is rotated (partial rotary)", 1.0, min=0.0, max=1.0),
    "scaling": p_enum("context extension: none, linear (position interpolation), ntk (NTK-aware base), yarn, "
                      "llama3 (Llama 3.1)", ROPE_SCALINGS, "none"),
    "factor": p_float("context extension factor s", 1.0, min=1.0),
    "original_max_len": p_int("training context length (yarn, llama3)", None),
    "beta_fast": p_float("yarn: rotations above which dims are kept (extrapolated)", 32.0, min=0.0),
    "beta_slow": p_float("yarn: rotations below which dims are interpolated", 1.0, min=0.0),
    "low_freq_factor": p_float("llama3: wavelengths above original_max_len / this are divided by factor", 1.0,
                               min=0.0),
    "high_freq_factor": p_float("llama3: wavelengths below original_max_len / this are kept", 4.0, min=0.0),
}, """Rotary position embedding (RoPE; Su et al. 2021; seed 002, "Rotary Positional Embeddings and
Long-Context Extrapolation"): queries and keys are rotated by their absolute position m before the scores.

Partial rotary: only the first r = int(head_dim · fraction) dims of each head turn (r must be even);
dims r..head_dim-1 pass through unchanged (GPT-NeoX style). Convention: **rotate-half** (GPT-NeoX,
Hugging Face LLaMA): dim i is paired with dim i + r/2 (not with its neighbour i + 1, the interleaved
GPT-J layout), both turning by the angle m·θ_i, i < r/2:
rope(x, m) = x·cos(mθ) + rotate_half(x)·sin(mθ) with rotate_half([a, b]) = [-b, a] over the two halves —
so LLaMA checkpoints load without permuting rows.

""" + cleandoc(rope_inv_freq.__doc__ or ""), check=_rope_check,
   rotary=lambda p, head_dim: rotary_dim(head_dim, p["fraction"]))


# ----- ALiBi ----------------------------------------------------------------
def alibi_slopes(heads: int) -> list[float]:
    """ALiBi head slopes (Press et al. 2022): the geometric sequence starting at 2^(-8/n) with that
    ratio for n a power of two; otherwise the n' = 2^floor(log2 n) slopes followed by every other
    slope of the 2n' sequence. 8 heads: 1/2, 1/4, ..., 1/256."""

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start ** (i + 1) for i in range(n)]

    if math.log2(heads).is_integer():
        return power_of_two(heads)
    closest = 2 ** math.floor(math.log2(heads))
    return power_of_two(closest) + power_of_two(2 * closest)[0::2][: heads - closest]


def alibi_bias(h: int, q_idx: int, kv_idx: int, heads: int) -> float:
    """score(i, j) += -m_h·|i - j| (seed 002, "Relative Positional Encodings and ALiBi")."""
    return -alibi_slopes(heads)[h] * abs(q_idx - kv_idx)


register_position("alibi", "score_bias", {}, alibi_bias.__doc__ or "")


# ----- T5 relative bias -----------------------------------------------------
def t5_bucket(relative_position: int, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128) -> int:
    """T5 relative-position bucket of ``relative_position = j - i`` (Raffel et al. 2020; seed 000,
    "Different Types of Transformers": B_ij depends only on i - j). Half the buckets (all, if
    unidirectional) are exact for |d| < max_exact = buckets/2; larger distances share log-spaced
    buckets up to max_distance; bidirectional gives keys after the query the upper half."""
    bucket = 0
    n = relative_position
    if bidirectional:
        num_buckets //= 2
        bucket += num_buckets if n > 0 else 0
        n = abs(n)
    else:
        n = -min(n, 0)
    max_exact = num_buckets // 2
    if n < max_exact:
        return bucket + n
    large = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    return bucket + min(large, num_buckets - 1)


def _t5_check(p: dict, heads: int, head_dim: int) -> tuple[str, str] | None:
    half = p["num_buckets"] // 2 if p["bidirectional"] else p["num_buckets"]
    if half // 2 < 1:
        return "num_buckets", f"num_buckets {p['num_buckets']} leaves no exact buckets; use at least {4 if p['bidirectional'] else 2}"
    if p["max_distance"] <= half // 2:
        return "max_distance", f"max_distance must exceed the exact range {half // 2}, got {p['max_distance']}"
    return None


register_position("t5_bias", "score_bias", {
    "num_buckets": p_int("number of relative-position buckets", 32),
    "max_distance": p_int("distance mapped to the last bucket", 128),
    "bidirectional": p_bool("separate buckets for keys after the query (encoder); false for causal decoders", True),
}, """T5 relative position bias (Raffel et al. 2020): score(i, j) += rel_bias.weight[bucket(j - i), h], a learned
[num_buckets, heads] table per attention node.

""" + cleandoc(t5_bucket.__doc__ or "") + """

Buckets: let b be the buckets per direction (num_buckets / 2 when bidirectional: keys at or before the
query use buckets 0..b-1, keys after it b..2b-1; else b = num_buckets) and e = b/2. A distance
d = |j - i| < e has its own bucket; a larger one gets e + ⌊log(d/e) / log(max_distance/e) · (b - e)⌋,
capped at b - 1, so every distance ≥ max_distance shares the last bucket. Unidirectional (causal
decoders): d = max(i - j, 0), so keys after the query share bucket 0 with the query itself.""", count=lambda p, heads, hd: p["num_buckets"] * heads, check=_t5_check, learnable=True)


# ----- Shaw relative positions ----------------------------------------------
def shaw_index(q_idx: int, kv_idx: int, max_distance: int) -> int:
    """Row of the relative table for (i, j): clip(j - i, -k, k) + k (Shaw et al. 2018)."""
    return max(-max_distance, min(max_distance, kv_idx - q_idx)) + max_distance


register_position("shaw", "score_bias", {
    "max_distance": p_int("clip distance k; the table has 2k+1 rows", 16),
    "values": p_bool("also learn a^V added to the values (the paper's second table)", False),
}, "Shaw et al. (2018) relative positions (seed 002, \"Relative Positional Encodings and ALiBi\"): "
   "e_ij = q_i·(k_j + a^K_ij)/√d with a^K_ij = rel_k[clip(j-i, -k, k) + k], rel_k [2k+1, head_dim] shared by heads",
   count=lambda p, heads, hd: (2 * p["max_distance"] + 1) * hd * (2 if p["values"] else 1),
   learnable=True, query_bias=True, value_term=lambda p: bool(p["values"]),
   value_doc="Shaw relative values add Σ_j p_ij·a^V_ij")

# ----- Swin window relative bias ------------------------------------------------
def window_dims(p: dict) -> tuple[int, int]:
    """(rows, cols) of the window: ``window`` rows, ``width`` columns (default: square)."""
    return p["window"], p["width"] or p["window"]


def window_relative_index(q_idx: Any, kv_idx: Any, rows: int, cols: int) -> Any:
    """Table row of tokens i, j of one window laid out row-major with ``cols`` columns (Liu et al. 2021,
    Swin): (y_i - y_j + rows - 1)·(2·cols - 1) + (x_i - x_j + cols - 1) with y = idx // cols, x = idx % cols
    (HF SwinRelativePositionBias's relative_position_index). Duck-typed: ints or integer tensors."""
    return (q_idx // cols - kv_idx // cols + rows - 1) * (2 * cols - 1) + (q_idx % cols - kv_idx % cols + cols - 1)


register_position("window_bias", "score_bias", {
    "window": p_int("window height in tokens (the sequence is one window, row-major)"),
    "width": p_int("window width in tokens (default: window, a square window)", None),
}, """Learned relative position bias inside a 2-D window (Liu et al. 2021, Swin; seed 000, "Different Types
of Transformers": B_ij depends only on the offset of j from i): score(i, j) += table[idx(i, j), h] with the table
``relative_position_bias_table`` [(2·rows - 1)·(2·cols - 1), heads] and

""" + cleandoc(window_relative_index.__doc__ or "") + """

The attention's sequence is the rows·cols tokens of one window (windows are folded into the batch by the
spec, e.g. reshape + permute); the index is computed from the token indices, so the spec stores none.""",
    count=lambda p, heads, hd: (2 * window_dims(p)[0] - 1) * (2 * window_dims(p)[1] - 1) * heads, learnable=True,
    length=lambda p: window_dims(p)[0] * window_dims(p)[1])

register_position("none", "input_transform", {}, "no position information inside attention")


# ----- parsing ----------------------------------------------------------------
def parse_position(value: Any, problems: list[tuple[str, str]] | None = None) -> tuple[str, dict[str, Any]]:
    """(name, params with defaults) of a position value; problems are appended or raised as ValueError."""

    def bad(sub: str, msg: str) -> tuple[str, dict]:
        if problems is None:
            raise ValueError(f"{sub}: {msg}" if sub else msg)
        problems.append((sub, msg))
        return "none", {}

    if value is None:
        value = "none"
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        return bad("", f"expected a position name or {{type: NAME, ...}}, got {value!r}")
    name = value.get("type")
    if name is None:
        return bad("", f"a position mapping needs 'type' (one of {', '.join(POSITIONS)})")
    if not isinstance(name, str):
        return bad("type", f"the position type must be a name (one of {', '.join(POSITIONS)}), got {name!r}")
    if name not in POSITIONS:
        if name in ABSOLUTE:
            return bad("type", f"'{name}' positions are absolute: add them to the embeddings with a "
                               f"position_embedding node (type: learned|sinusoidal), and use position: none here")
        guess = did_you_mean(str(name), POSITIONS)
        return bad("type", f"unknown position type '{name}'" + (f"; {guess}" if guess else "") +
                   f" (known: {', '.join(POSITIONS)})")
    pdef = POSITIONS[name]
    params: dict[str, Any] = {}
    for key, raw in value.items():
        if key == "type":
            continue
        if key not in pdef.params:
            guess = did_you_mean(str(key), pdef.params)
            known = ", ".join(pdef.params) or "none"
            bad(key, f"unknown parameter '{key}' of position '{name}'" + (f"; {guess}" if guess else "") + f" (known: {known})")
            continue
        checked, errs = check_value(pdef.params[key], raw)
        for sub, msg in errs:
            bad(f"{key}.{sub}" if sub else key, msg)
        params[key] = checked
    for key, p in pdef.params.items():
        params.setdefault(key, None if p.required else p.default)
    return name, params


def check_position(value: Any) -> list[tuple[str, str]]:
    """Checker for the ``position`` param."""
    problems: list[tuple[str, str]] = []
    parse_position(value, problems)
    return problems


def position_schema() -> dict:
    """JSON Schema of a position value, generated from the registry."""
    names = [n for n, p in POSITIONS.items() if not any(x.required for x in p.params.values())]
    objs = [{"type": "object", "description": f"{p.kind}: {p.doc.splitlines()[0] if p.doc else n}",
             "properties": {"type": {"const": n}, **{k: param_schema(x) for k, x in p.params.items()}},
             "required": ["type"], "additionalProperties": False} for n, p in POSITIONS.items()]
    return {"anyOf": [{"enum": names}] + objs}


def position_param() -> Param:
    """The ``position`` parameter of attention ops."""
    return Param("custom", f"position encoding inside attention: a name or {{type: NAME, ...}}; one of {', '.join(POSITIONS)}",
                 "none", schema=position_schema(), check=check_position)
