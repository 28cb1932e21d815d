"""The one adapter between ``/v1/generate`` and the decoding code: ids or text in, new tokens (and text) out,
step by step as the decoder chooses them.

The decoder is :func:`nngraph.compilers.onnx.generate.stream` (KV cache as ONNX inputs/outputs), the options
:class:`nngraph.compilers.sampling.GenerationOptions` (greedy, or sampled with temperature, top-k, top-p and a
repetition penalty; stop tokens per row; a seed), the text :mod:`nngraph.compilers.tokenizer`'s (the model's
tokenizer.json: a run folder's, the ONNX metadata's, one beside the file, or ``--tokenizer``). The route and
its server-sent events see only :class:`Generator` and :class:`Piece`. Rows of different lengths are decoded
together, left-padded, when the model has the inputs for it (a ``key_padding`` input; else the decoder says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from nngraph.compilers.decoding import left_pad
from nngraph.compilers.onnx.generate import stream
from nngraph.compilers.onnx.runner import InferError, open_model
from nngraph.compilers.sampling import GenerationOptions, GenerationOptionsError
from nngraph.compilers.tokenizer import TextStream, TokenizerError

#: the request fields that are sampling options, with the JSON types each takes
FIELDS = {"max_new_tokens": int, "do_sample": bool, "temperature": float, "top_k": int, "top_p": float,
          "repetition_penalty": float, "seed": int, "eos": list}


@dataclass(frozen=True)
class Piece:
    """One decoding step: the token every row got (a stopped row's pad), whether the row generated it, and
    with a tokenizer the text each row added (held back while a character is incomplete)."""

    ids: np.ndarray
    active: np.ndarray
    text: list[str] | None


def options_from(body: dict[str, Any], max_new_tokens: int) -> GenerationOptions:
    """The options of a request body (``eos``: one stop token id or a list); sampling is on with
    ``do_sample``, ``top_k`` or ``top_p`` (as ``nngraph generate --sample``). InferError naming the field."""
    given = {key: _typed(key, body[key]) for key in FIELDS if body.get(key) is not None}
    limit = given.setdefault("max_new_tokens", min(20, max_new_tokens))
    if limit > max_new_tokens:
        raise InferError(f"'max_new_tokens' is {limit}; this server gives at most {max_new_tokens}")
    given.setdefault("do_sample", "top_k" in given or "top_p" in given)
    given["stop_tokens"] = tuple(given.pop("eos", ()))
    try:
        return GenerationOptions(**given)
    except GenerationOptionsError as exc:
        raise InferError(str(exc)) from None


def _typed(key: str, value: Any) -> Any:
    want = FIELDS[key]
    if want is list:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise InferError(f"'{key}' must be a token id or a list of token ids, got {value!r}")
        return items
    ok = isinstance(value, bool) if want is bool else (
        isinstance(value, (int, float) if want is float else int) and not isinstance(value, bool))
    if not ok or (want is float and not math.isfinite(value)) or (key == "seed" and value < 0):
        raise InferError(f"'{key}' must be {'a finite number' if want is float else want.__name__}, got {value!r}")
    return float(value) if want is float else value


class Generator:
    """A decoder session (a KV-cache export when there is one), its tokenizer if any, and streaming."""

    def __init__(self, path: str | Path, target: str = "ort-cpu", threads: int | None = None,
                 tokenizer: Any = None) -> None:
        self.session = open_model(path, target, threads)
        self.tokenizer = tokenizer

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of text prompts (one row each; rows of different lengths are left-padded by the decoder)."""
        if self.tokenizer is None:
            raise InferError("this model has no tokenizer (none in its run folder, metadata or folder; serve "
                             "--tokenizer FILE): send token ids as \"ids\"")
        try:
            rows = [self.tokenizer.encode(t) for t in texts]
        except TokenizerError as exc:
            raise InferError(str(exc)) from None
        if not all(rows):
            raise InferError(f"text prompt {texts[[bool(r) for r in rows].index(False)]!r} encodes to no tokens")
        return rows

    @staticmethod
    def padded(rows: list[list[int]]) -> np.ndarray:
        """The prompt as the decoder runs it, [B, T]: rows of different lengths left-padded with 0."""
        return left_pad(rows)[0]

    def decode(self, rows: np.ndarray) -> list[str] | None:
        """Each row's text (None without a tokenizer)."""
        return None if self.tokenizer is None else [self.tokenizer.decode(r) for r in rows.tolist()]

    def stream(self, rows: list[list[int]], options: GenerationOptions) -> Iterator[Piece]:
        """The decoder's steps as :class:`Piece` s; the prompt is checked at the first ``next()``."""
        pieces = TextStream(self.tokenizer, len(rows)) if self.tokenizer is not None else None
        for step in stream(self.session, rows, options):
            text = pieces.add(step.tokens.tolist(), step.active.tolist()) if pieces is not None else None
            yield Piece(step.tokens, step.active, text)
