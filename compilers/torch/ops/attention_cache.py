"""KV cache for incremental decoding, and greedy generation with or without it.

Calling convention (module level; the spec and the generated ``forward`` do not change): a
:class:`KVCache` is *attached* to a compiled model for a decoding session::

    cache = KVCache()
    with cache.attach(model):          # every attention / position_embedding module gets a slot
        logits = model(prompt)         # [B, T0]: fills the cache with T0 positions
        logits = model(next_token)     # [B, 1]: attends to the T0 cached keys + itself

While attached, each ``attention`` module (seed 002, "Masked Attention and Autoregressive
Generation") keeps its keys and values [B, G, S, d] (after RoPE, before the grouped-query
repeat) and treats a call's T queries as positions ``S_past .. S_past + T - 1``: masks, RoPE and
relative biases (ALiBi, T5, Shaw) use those absolute positions -- unless the call passes ``positions``
[B, T] (the new tokens' per-row ids): RoPE rotates at them and the slot keeps every key's id for the biases. A cross-attention module (one with a
``context``) projects the context once and reuses its keys/values. A ``position_embedding`` module
counts the tokens it has seen and offsets its positions by that count (unless a ``positions``
input is given). Detaching (leaving the ``with``) clears every slot. ``include`` restricts the
cache to modules under some node-name prefixes, e.g. ``include=["decoder"]`` for an
encoder-decoder whose encoder must not cache (the encoder then reruns on the full source each
step, which is correct but not the fastest).

The efficient variants (linear, Performer, Linformer attention) have no cache: attaching to a model
that contains one raises ``ValueError``.

:func:`stream` / :func:`generate` decode on top of this -- greedy or sampled, stop tokens, rows of
different lengths left-padded -- choosing tokens with :mod:`nngraph.compilers.sampling` as the ONNX Runtime
decoder does; with ``use_cache=False`` they re-run the whole sequence every step (the reference the cached
path must equal).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from nngraph.compilers.decoding import check_padding, left_pad, step_feeds
from nngraph.compilers.sampling import Chooser, GenerationOptions, Step


@dataclass
class CacheSlot:
    """One module's decoding state: keys/values so far (attention) and positions seen."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    length: int = 0
    pos: torch.Tensor | None = None   # the keys' per-row position ids [B, S], once a call passed ``positions``

    def append(self, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenate new keys/values [B, G, T, d] after the cached ones; returns all of them. ``pos``: the new
        keys' position ids [B, T] (calls without them count on from the cached length)."""
        if pos is not None or self.pos is not None:
            batch, new = k.shape[0], k.shape[-2]
            old = self.pos if self.pos is not None else torch.arange(self.length, device=k.device).expand(batch, -1)
            if pos is None:
                pos = torch.arange(self.length, self.length + new, device=k.device).expand(batch, -1)
            self.pos = torch.cat((old, pos.to(old.dtype)), dim=1)
        if self.k is not None:
            k, v = torch.cat((self.k, k), dim=-2), torch.cat((self.v, v), dim=-2)
        self.k, self.v, self.length = k, v, k.shape[-2]
        return k, v


class KVCache:
    """The decoding state of one model: a :class:`CacheSlot` per attention / position module, by module name."""

    def __init__(self) -> None:
        self.slots: dict[str, CacheSlot] = {}

    @property
    def length(self) -> int:
        """Positions cached so far (the longest slot)."""
        return max((s.length for s in self.slots.values()), default=0)

    @contextlib.contextmanager
    def attach(self, model: nn.Module, include: Sequence[str] | None = None) -> Iterator["KVCache"]:
        """Give every cache-aware module of ``model`` (under ``include`` prefixes, if given) a slot."""
        chosen = []
        for name, module in model.named_modules():
            if getattr(module, "kv_cache_support", None) is False:
                raise ValueError(f"module '{name}' ({type(module).__name__}) has no KV cache; "
                                 "decode without one (use_cache=False)")
            if not hasattr(module, "kv_cache"):
                continue
            if include is not None and not any(name == p or name.startswith(p + ".") for p in include):
                continue
            chosen.append((name, module))
        self.slots = {name: CacheSlot() for name, _ in chosen}
        for name, module in chosen:
            module.kv_cache = self.slots[name]
        try:
            yield self
        finally:
            for _, module in chosen:
                module.kv_cache = None
            self.slots = {}


def _logits(out: Any, output: str | None) -> torch.Tensor:
    if isinstance(out, dict):
        return out[output or "logits"]
    return out


def _feeds(roles: dict[str, str], mask: Any, new: int, device: Any) -> dict[str, torch.Tensor]:
    """The key_padding / positions inputs of a step as tensors (:func:`nngraph.compilers.decoding.step_feeds`)."""
    return {k: torch.from_numpy(v).to(device) for k, v in step_feeds(roles, mask, new).items()}


def stream(model: nn.Module, tokens: torch.Tensor | Sequence[Sequence[int]],
           options: GenerationOptions | int = GenerationOptions(), *, use_cache: bool = True,
           input_name: str | None = None, output: str | None = None, include: Sequence[str] | None = None,
           roles: dict[str, str] | None = None, unpositioned: Sequence[str] = (),
           **inputs: torch.Tensor) -> Iterator[Step]:
    """Decode ``tokens`` [B, T0] (or rows of different lengths, left-padded), yielding each step's
    :class:`~nngraph.compilers.sampling.Step` as it is chosen (``options``: a GenerationOptions or just
    ``max_new_tokens``, greedy).

    ``input_name`` is the graph input that takes the token ids (default: the model's first input),
    ``output`` the logits output for multi-output models (default ``logits``), ``inputs`` other graph
    inputs passed unchanged every step (e.g. an encoder-decoder's ``src_tokens``), ``roles`` the
    key_padding / positions inputs (:func:`nngraph.compilers.decoding.input_roles` of the graph), fed
    per step from the padding mask -- needed for rows of different lengths (``unpositioned``:
    :func:`nngraph.compilers.decoding.unpositioned` of the graph, refused with padding).
    """
    options = options if isinstance(options, GenerationOptions) else GenerationOptions(max_new_tokens=options)
    roles = roles or {}
    device = next(model.parameters()).device
    ids, mask = (tokens.cpu().numpy(), np.ones(tuple(tokens.shape), np.int64)) if isinstance(tokens, torch.Tensor) \
        else left_pad(tokens)
    check_padding(roles, unpositioned, mask, "the model")
    name = input_name or next(iter(getattr(model, "input_types", {}) or {"tokens": None}))
    chooser, seq = Chooser(options, ids, mask), torch.from_numpy(ids).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), (KVCache().attach(model, include) if use_cache else contextlib.nullcontext()):
            step_in = seq
            while not chooser.done:
                new = step_in.shape[1]
                logits = _logits(model(**{name: step_in}, **inputs, **_feeds(roles, mask, new, device)), output)
                step = chooser.step(logits[:, -1].float().cpu().numpy())
                yield step
                nxt = torch.from_numpy(step.tokens[:, None]).to(device)
                seq = torch.cat((seq, nxt), dim=1)
                mask = np.concatenate([mask, np.ones_like(mask[:, :1])], axis=1)
                step_in = nxt if use_cache else seq
    finally:
        model.train(was_training)


def generate(model: nn.Module, tokens: torch.Tensor | Sequence[Sequence[int]],
             options: GenerationOptions | int = GenerationOptions(), **kw: Any) -> torch.Tensor:
    """``tokens`` [B, T0] -> [B, T0 + n]: every step of :func:`stream` (``kw``: its keyword arguments) appended
    (rows of different lengths come back left-padded with id 0)."""
    ids = tokens if isinstance(tokens, torch.Tensor) else torch.from_numpy(left_pad(tokens)[0])
    steps = [torch.from_numpy(s.tokens[:, None]).to(ids.device) for s in stream(model, tokens, options, **kw)]
    return torch.cat([ids, *steps], dim=1)
