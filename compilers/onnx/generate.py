"""Autoregressive decoding with an exported decoder: greedy or sampled, the KV cache as ONNX inputs/outputs.

With a model exported with ``kv_cache=True`` (metadata ``nngraph.kv_cache``), the prompt is run
once with empty ``past.{i}.key/value`` inputs ([B, G, 0, d]); every later step feeds one token per
row and the previous step's ``present.{i}.*`` outputs as the new past -- the ONNX counterpart of
:func:`nngraph.compilers.torch.ops.attention_cache.generate`. A model without a cache re-runs the whole
sequence each step (correct, quadratic).

Rows of different lengths are left-padded (:mod:`nngraph.compilers.decoding`): a ``key_padding`` input of
the model gets ``¬mask`` over every key so far ([B, P + T]) and a ``positions`` input each row's own
positions; a model without them decodes rows of one length only (the error says what to add).

Choosing the next token from the last position's logits -- greedy or sampled (temperature, top-k,
top-p, repetition penalty, seed), stop tokens per row -- is :mod:`nngraph.compilers.sampling`'s, shared
with the torch decoder; :func:`stream` yields each step as it is chosen, :func:`generate` collects them.

Encoder-decoder (a decoder step whose metadata has ``nngraph.seq2seq``, written by
:mod:`nngraph.compilers.onnx.seq2seq`): the encoder file beside it runs ONCE on ``source`` (token ids
[B, S] for its first input; other source inputs from ``inputs``, and a [batch] integer input such
as ``src_lengths`` not given defaults to S: no padding); its memory and the source inputs the
decoder also reads are fed unchanged at every decoder step, while the self-attention cache grows.
``prompt`` is then the decoder's start tokens (e.g. T5's pad id 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..decoding import check_padding, left_pad, step_feeds
from ..sampling import Chooser, GenerationOptions, Step
from .runner import InferError, open_model, run_session


def stream(model: str | Path | Any, prompt: Sequence[Sequence[int]] | np.ndarray,
           options: GenerationOptions | int = GenerationOptions(), *, target: str = "ort-cpu", use_cache: bool = True,
           source: Any = None, inputs: dict[str, Any] | None = None, encoder: Any = None) -> Iterator[Step]:
    """Decode ``prompt`` [B, T0] token ids, yielding each step's tokens as soon as they are chosen (a
    :class:`~nngraph.compilers.sampling.Step`: ``tokens`` [B], ``active``, ``finished``); ``options``: a
    :class:`~nngraph.compilers.sampling.GenerationOptions` or just ``max_new_tokens`` (greedy).

    ``source``/``inputs``/``encoder`` (an encoder session or file; default: the one the metadata names,
    beside ``model``): an encoder-decoder's source, see the module doc. The checks run before the first
    step, so a bad prompt raises :class:`InferError` at the first ``next()``."""
    from .metadata import read_metadata

    options = options if isinstance(options, GenerationOptions) else GenerationOptions(max_new_tokens=options)
    session = model if hasattr(model, "run") else open_model(model, target)
    meta = read_metadata(session)
    tokens, mask = _rows(prompt)
    kv = meta.get("kv_cache") if use_cache else None
    roles = (kv or {}).get("input_roles", {})
    try:
        check_padding(roles, (kv or {}).get("unpositioned", []), mask, "the model")
    except ValueError as exc:
        raise InferError(str(exc)) from None
    inputs_given, inputs = inputs, [i.name for i in session.get_inputs()]
    tok_name = kv["token_input"] if kv else inputs[0]
    logits_name = kv["logits_output"] if kv else session.get_outputs()[0].name
    check_token_ids(tokens, _vocab(session, logits_name), "the prompt")
    limit = (kv or {}).get("max_len") or _max_len(meta)
    if limit is not None and tokens.shape[1] + options.max_new_tokens > limit:
        raise InferError(f"prompt length {tokens.shape[1]} + {options.max_new_tokens} new tokens exceeds the "
                         f"model's {limit} positions")
    fixed = _seq2seq_feeds(model, meta, tokens.shape[0], source, dict(inputs_given or {}), encoder, target)
    extra = [n for n in inputs if n != tok_name and not (kv and n.startswith("past.")) and n not in fixed
             and n not in roles]
    if extra:
        raise InferError(f"generate feeds only the token input '{tok_name}'; the model also needs {', '.join(extra)}")
    chooser = Chooser(options, tokens, mask)
    seq = tokens
    feeds: dict[str, np.ndarray] = {tok_name: tokens, **fixed, **step_feeds(roles, mask, tokens.shape[1])}
    if kv:
        for layer in kv["layers"]:
            empty = np.zeros((tokens.shape[0], layer["kv_heads"], 0, layer["head_dim"]), np.float32)
            feeds[layer["past_key"]] = feeds[layer["past_value"]] = empty
    while not chooser.done:
        out = run_session(session, feeds)
        step = chooser.step(out[logits_name][:, -1])
        yield step
        seq = np.concatenate([seq, step.tokens[:, None]], axis=1)
        mask = np.concatenate([mask, np.ones_like(mask[:, :1])], axis=1)  # generated tokens are keys too
        if kv:
            feeds = {tok_name: step.tokens[:, None], **fixed, **step_feeds(roles, mask, 1)}
            for layer in kv["layers"]:
                feeds[layer["past_key"]] = out[layer["present_key"]]
                feeds[layer["past_value"]] = out[layer["present_value"]]
        else:
            feeds = {tok_name: seq, **fixed}


def generate(model: str | Path | Any, prompt: Sequence[Sequence[int]] | np.ndarray,
             options: GenerationOptions | int = GenerationOptions(), **run: Any) -> np.ndarray:
    """``prompt`` [B, T0] token ids -> [B, T0 + n] (n <= ``max_new_tokens``; fewer when every row stopped):
    every step of :func:`stream` (``run``: its keyword arguments) appended."""
    tokens = _rows(prompt)[0]
    steps = [s.tokens[:, None] for s in stream(model, prompt, options, **run)]
    return np.concatenate([tokens, *steps], axis=1)


def _rows(prompt: Any) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [B, T] int64, mask [B, T]): rows of different lengths left-padded (mask 0 at the pads)."""
    if not isinstance(prompt, np.ndarray) and len({len(r) for r in prompt}) > 1:
        if not all(len(r) for r in prompt):
            raise InferError("a prompt row is empty: every row needs at least one token")
        return left_pad(prompt)
    tokens = np.asarray(prompt, dtype=np.int64)
    if tokens.ndim != 2 or tokens.shape[1] == 0:
        raise InferError(f"the prompt must be token ids [batch, length >= 1], got shape {list(tokens.shape)}")
    return tokens, np.ones_like(tokens)


def _seq2seq_feeds(model: Any, meta: dict, batch: int, source: Any, given: dict[str, Any], encoder: Any,
                   target: str) -> dict[str, np.ndarray]:
    """The decoder inputs fixed for the whole decoding: the encoder's memory and shared source inputs ({} for a
    decoder-only model, whose extra inputs are refused by the caller)."""
    info = meta.get("seq2seq")
    if not info:
        return {}
    from .metadata import read_metadata

    if encoder is None:
        if hasattr(model, "run"):
            raise InferError("an encoder-decoder session: pass encoder= (the encoder file or session)")
        path = Path(model).with_name(info["encoder"])
        if not path.is_file():
            raise InferError(f"the encoder file '{path}' that the decoder's metadata names is missing")
        encoder = open_model(path, target)
    elif not hasattr(encoder, "run"):
        encoder = open_model(encoder, target)
    if source is None:
        raise InferError(f"an encoder-decoder: give the source token ids (--source; the encoder reads "
                         f"{', '.join(info['source_inputs'])})")
    src = np.asarray(source, dtype=np.int64)
    if src.ndim == 1:
        src = src[None]
    if src.ndim != 2 or src.shape[0] != batch:
        raise InferError(f"the source must be token ids [batch={batch}, length], got shape {list(src.shape)}")
    enc_meta = {i["name"]: i for i in read_metadata(encoder).get("inputs", [])}
    feeds = {info["source_inputs"][0]: src}
    for name in info["source_inputs"][1:]:
        if name in given:
            feeds[name] = np.asarray(given[name])
        elif len(enc_meta.get(name, {}).get("shape", [])) == 1 and enc_meta[name].get("dtype", "").startswith("int"):
            feeds[name] = np.full((batch,), src.shape[1], dtype=np.int64)   # lengths: no padding
        else:
            raise InferError(f"the encoder also needs '{name}': give it with --input {name}=FILE")
    memory = run_session(encoder, feeds)["memory"]
    return {info["memory"]: memory, **{k: feeds[k] for k in info["shared_inputs"]}}


def check_token_ids(tokens: np.ndarray, vocab: int | None, what: str) -> None:
    """InferError naming the first id outside 0..vocab-1 (ORT would wrap a negative one or fail in a Gather)."""
    bad = (tokens < 0) | (tokens >= vocab if vocab else False)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        limit = f"0..{vocab - 1} (the model's vocabulary)" if vocab else "0 or more"
        raise InferError(f"{what}: token id {int(tokens[row, col])} at row {row}, position {col} is outside {limit}")


def _vocab(session: Any, logits_name: str) -> int | None:
    """The vocabulary size: the logits output's last dim when it is fixed."""
    shape = next(o.shape for o in session.get_outputs() if o.name == logits_name)
    return shape[-1] if shape and isinstance(shape[-1], int) and shape[-1] > 0 else None


def _max_len(meta: dict) -> int | None:
    value = meta.get("max_positions")
    return int(value) if value not in (None, "", "null") else None
