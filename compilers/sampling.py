"""Choosing the next token from a language model's logits, and when each row stops: numpy only, back-end free.

Both decoders -- ONNX Runtime (:mod:`nngraph.compilers.onnx.generate`) and torch
(:mod:`nngraph.compilers.torch.ops.attention_cache`) -- hand the last position's logits [B, V] to one
:class:`Chooser` per generation, which applies, in Hugging Face ``generate``'s order:

1. repetition penalty ρ (also when greedy): for every token already in the row (prompt or generated),
   ``l ← l/ρ`` if ``l > 0`` else ``l·ρ`` (CTRL, Keskar et al. 2019);
2. with sampling only: temperature ``l ← l/T``; top-k (keep the logits ≥ the k-th largest: ties at the
   k-th are kept); top-p (nucleus: sorted ascending, drop the tokens whose cumulative probability is
   ≤ 1 - p; the most likely token always stays);
3. greedy: argmax (ties -> the lowest id, as torch.argmax); sampling: softmax of what is left, one
   uniform draw per row from a numpy generator seeded with ``seed`` (same seed, same tokens).

A row stops once it produced one of ``stop_tokens`` (its EOS); from then on it emits ``pad_id`` (default:
the stop token it produced) and the decoder stops when every row has stopped or after ``max_new_tokens``.
Every step is reported as a :class:`Step` (the streaming interface).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


class GenerationOptionsError(ValueError):
    """An option outside its range (the message names it)."""


@dataclass(frozen=True)
class GenerationOptions:
    """How to decode: length, sampling filters, stop tokens and seed (see the module doc)."""

    max_new_tokens: int = 20
    do_sample: bool = False              # False: greedy (only the repetition penalty applies)
    temperature: float = 1.0             # sampling: logits / temperature; 0 means greedy
    top_k: int | None = None             # sampling: keep the k largest logits (None or 0: all)
    top_p: float | None = None           # sampling: the smallest set with probability >= top_p (None or 1: all)
    repetition_penalty: float = 1.0      # > 1 discourages tokens already in the row
    stop_tokens: tuple[int, ...] = ()    # a row stops after producing one (EOS)
    pad_id: int | None = None            # what a stopped row emits (default: the stop token it produced)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop_tokens", tuple(int(t) for t in self.stop_tokens))
        problems = [
            (self.max_new_tokens < 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (not (math.isfinite(self.temperature) and self.temperature >= 0),
             f"temperature must be a finite number >= 0, got {self.temperature}"),
            (self.top_k is not None and self.top_k < 0, f"top_k must be >= 0, got {self.top_k}"),
            (self.top_p is not None and not 0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (not (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0),
             f"repetition_penalty must be a finite number > 0, got {self.repetition_penalty}"),
            (any(t < 0 for t in self.stop_tokens), f"stop tokens must be token ids >= 0, got {self.stop_tokens}"),
        ]
        bad = [text for wrong, text in problems if wrong]
        if bad:
            raise GenerationOptionsError("; ".join(bad))

    @property
    def sampling(self) -> bool:
        """Whether tokens are drawn (else greedy): ``do_sample`` with a temperature above 0."""
        return self.do_sample and self.temperature > 0


@dataclass(frozen=True)
class Step:
    """One decoding step: ``tokens`` [B] the ids appended to every row (a stopped row's pad), ``active`` [B]
    whether the row generated it (it had not stopped before), ``finished`` [B] whether it has stopped now."""

    index: int
    tokens: np.ndarray
    active: np.ndarray
    finished: np.ndarray


# ----- the filters (one formula each; logits [B, V] float64, -inf = removed) -------------------------------
def apply_repetition_penalty(logits: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """``l/ρ`` where ``l > 0`` else ``l·ρ``, for the tokens marked in ``seen`` [B, V] (bool)."""
    if penalty == 1.0:
        return logits
    penalized = np.where(logits > 0, logits / penalty, logits * penalty)
    return np.where(seen, penalized, logits)


def apply_top_k(logits: np.ndarray, k: int | None) -> np.ndarray:
    """Keep the logits >= the row's k-th largest (ties kept), -inf elsewhere."""
    if not k or k >= logits.shape[-1]:
        return logits
    kth = -np.partition(-logits, k - 1, axis=-1)[:, k - 1:k]
    return np.where(logits < kth, -np.inf, logits)


def apply_top_p(logits: np.ndarray, p: float | None) -> np.ndarray:
    """Nucleus: with the logits sorted ascending, remove those whose cumulative softmax is <= 1 - p (the
    largest always stays)."""
    if p is None or p >= 1.0:
        return logits
    order = np.argsort(logits, axis=-1, kind="stable")
    cum = np.cumsum(softmax(np.take_along_axis(logits, order, axis=-1)), axis=-1)
    drop = cum <= 1 - p
    drop[:, -1] = False
    out = logits.copy()
    np.put_along_axis(out, order, np.where(drop, -np.inf, np.take_along_axis(logits, order, axis=-1)), axis=-1)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """exp(l - max) / Σ exp(l - max) along the last axis (-inf -> probability 0)."""
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def processed(logits: np.ndarray, seen: np.ndarray | None, options: GenerationOptions) -> np.ndarray:
    """The logits after every filter ``options`` asks for, in Hugging Face's order (float64)."""
    out = np.asarray(logits, dtype=np.float64)
    if seen is not None:
        out = apply_repetition_penalty(out, seen, options.repetition_penalty)
    if options.sampling:
        out = apply_top_p(apply_top_k(out / options.temperature, options.top_k), options.top_p)
    return out


def draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One id per row from the probabilities [B, V]: the first index whose cumulative probability exceeds a
    uniform draw (inverse CDF)."""
    cum = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[0])[:, None] * cum[:, -1:]
    return np.minimum((cum <= u).sum(-1), probs.shape[-1] - 1)


# ----- one generation's state ----------------------------------------------------------------------------
@dataclass
class Chooser:
    """Picks each step's tokens and tracks which rows stopped. ``prompt`` [B, T] ids; ``prompt_mask`` [B, T]
    (1 = real token, 0 = padding; default all real) says which prompt ids count for the repetition penalty."""

    options: GenerationOptions
    prompt: np.ndarray
    prompt_mask: np.ndarray | None = None
    rng: np.random.Generator = field(init=False)
    finished: np.ndarray = field(init=False)
    pads: np.ndarray = field(init=False)
    seen: np.ndarray | None = field(init=False, default=None)
    steps: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.options.seed)
        batch = self.prompt.shape[0]
        self.finished = np.zeros(batch, dtype=bool)
        self.pads = np.zeros(batch, dtype=np.int64)

    def _seen(self, vocab: int) -> np.ndarray | None:
        """[B, V] tokens already in each row (built on the first step, when V is known)."""
        if self.options.repetition_penalty == 1.0:
            return None
        if self.seen is None:
            self.seen = np.zeros((self.prompt.shape[0], vocab), dtype=bool)
            mask = np.ones(self.prompt.shape, bool) if self.prompt_mask is None else self.prompt_mask.astype(bool)
            rows = np.broadcast_to(np.arange(self.prompt.shape[0])[:, None], self.prompt.shape)
            self.seen[rows[mask], np.clip(self.prompt[mask], 0, vocab - 1)] = True
        return self.seen

    def step(self, logits: np.ndarray) -> Step:
        """The next tokens from the last position's ``logits`` [B, V]."""
        scores = processed(logits, self._seen(logits.shape[-1]), self.options)
        ids = draw(softmax(scores), self.rng) if self.options.sampling else scores.argmax(-1)
        active = ~self.finished
        ids = np.where(active, ids, self.pads).astype(np.int64)
        if self.seen is not None:
            self.seen[np.arange(len(ids))[active], ids[active]] = True
        stopped = active & np.isin(ids, self.options.stop_tokens)
        pad = self.options.pad_id
        self.pads = np.where(stopped, ids if pad is None else pad, self.pads)
        self.finished = self.finished | stopped
        self.steps += 1
        return Step(self.steps - 1, ids, active, self.finished.copy())

    @property
    def done(self) -> bool:
        """Every row stopped, or ``max_new_tokens`` steps were taken."""
        return bool(self.finished.all()) or self.steps >= self.options.max_new_tokens
