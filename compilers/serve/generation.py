"""The one adapter between ``/v1/generate`` and the decoding code: ids (or text) in, new tokens out, step by step.

Today's decoder (:func:`nngraph.compilers.onnx.generate.generate`) returns the whole sequence at the end and
has no tokenizer, so :meth:`Generator.stream` runs it and then yields the new tokens one step at a time, and
``text`` prompts are refused. When the decoding loop yields tokens as it makes them (with sampling options
and a tokenizer), only this module changes: the route and its server-sent events stay as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from nngraph.compilers.onnx.generate import generate
from nngraph.compilers.onnx.runner import InferError, open_model


@dataclass(frozen=True)
class Options:
    """The sampling options of ``nngraph generate``: greedy unless ``top_k``; ``eos`` stops a row."""

    max_new_tokens: int = 20
    top_k: int | None = None
    temperature: float = 1.0
    seed: int = 0
    eos: int | None = None


def options_from(body: dict[str, Any], max_new_tokens: int) -> Options:
    """The options of a request body, each checked (InferError naming the field); at most ``max_new_tokens``."""
    def integer(key: str, low: int, high: int | None = None) -> int | None:
        value = body.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            raise InferError(f"'{key}' must be an integer in {low}..{high if high is not None else ''}, got {value!r}")
        return value

    temperature = body.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature < 0:
        raise InferError(f"'temperature' must be a finite number >= 0, got {temperature!r}")
    return Options(max_new_tokens=integer("max_new_tokens", 1, max_new_tokens) or min(20, max_new_tokens), top_k=integer("top_k", 1),
                   temperature=float(temperature), seed=integer("seed", 0, 2**63 - 1) or 0, eos=integer("eos", 0))


class Generator:
    """A decoder session (a KV-cache export when there is one) and how to stream from it."""

    def __init__(self, path: str | Path, target: str = "ort-cpu", threads: int | None = None) -> None:
        self.session = open_model(path, target, threads)

    def encode(self, text: str) -> np.ndarray:
        """Token ids [1, T] of a text prompt: needs a tokenizer, which today's models do not carry."""
        raise InferError("this model carries no tokenizer: send token ids as \"ids\" (e.g. [[1, 2, 3]])")

    def stream(self, ids: np.ndarray, options: Options) -> Iterator[np.ndarray]:
        """The new token of every row [B], one step at a time."""
        seq = generate(self.session, ids, options.max_new_tokens, top_k=options.top_k,
                       temperature=options.temperature, seed=options.seed, eos=options.eos)
        for step in range(ids.shape[1], seq.shape[1]):
            yield seq[:, step]
