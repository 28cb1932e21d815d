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
        self.k, self.v = self.store(k, v)
        self.length = self.k.shape[-2]
        return self.k, self.v

    def store(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All keys/values after appending the new ones: ``cat(past, new)`` (what an ONNX trace records as the
        present = Concat(past, new))."""
        if self.k is None:
            return k, v
        return torch.cat((self.k, k), dim=-2), torch.cat((self.v, v), dim=-2)


@dataclass
class BufferSlot(CacheSlot):
    """A :class:`CacheSlot` whose keys/values live in a preallocated buffer [B, G, capacity, d], written in place:
    a step copies only its new keys (``cat`` copies all S cached ones every step, O(S²) over a generation).
    When full the capacity doubles (amortized O(1) per key). ``k``/``v`` are views of the filled part. With
    gradients on it stores by ``cat`` (an in-place write would overwrite what autograd saved)."""

    buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def store(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.is_grad_enabled():
            self.buffers = None
            return super().store(k, v)
        start = self.k.shape[-2] if self.k is not None else 0
        end = start + k.shape[-2]
        if self.buffers is None or end > self.buffers[0].shape[-2]:
            self.buffers = tuple(self._grown(old, new, start, end) for old, new in ((self.k, k), (self.v, v)))
        kb, vb = self.buffers
        kb[..., start:end, :], vb[..., start:end, :] = k, v
        return kb[..., :end, :], vb[..., :end, :]

    @staticmethod
    def _grown(old: torch.Tensor | None, new: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """A buffer of capacity max(2·end, 64) holding ``old``'s ``start`` keys."""
        buf = new.new_empty((*new.shape[:-2], max(2 * end, 64), new.shape[-1]))
        if old is not None and start:
            buf[..., :start, :] = old
        return buf


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
        self.slots = {name: BufferSlot() for name, _ in chosen}
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
           roles: dict[str, str] | None = None, unpositioned: Sequence[str] | None = None,
           **inputs: torch.Tensor) -> Iterator[Step]:
    """Decode ``tokens`` [B, T0] (or rows of different lengths, left-padded), yielding each step's
    :class:`~nngraph.compilers.sampling.Step` as it is chosen (``options``: a GenerationOptions or just
    ``max_new_tokens``, greedy).

    ``input_name`` is the graph input that takes the token ids (default: the model's first input),
    ``output`` the logits output for multi-output models (default ``logits``), ``inputs`` other graph
    inputs passed unchanged every step (e.g. an encoder-decoder's ``src_tokens``). The key_padding /
    positions inputs, fed per step from the padding mask, and the position embeddings that cannot take
    padded rows come from the generated class (``input_roles``, ``unpositioned``: see
    :func:`nngraph.compilers.decoding.decoding_facts`), as the ONNX decoder reads them from the file;
    ``roles`` / ``unpositioned`` override them (for a module that is not generated by nngraph).

    Each forward runs under ``torch.inference_mode`` (between steps the caller's own grad mode applies);
    the cache writes keys in place (:class:`BufferSlot`).
    """
    options = options if isinstance(options, GenerationOptions) else GenerationOptions(max_new_tokens=options)
    roles = getattr(model, "input_roles", {}) if roles is None else roles
    unpositioned = getattr(model, "unpositioned", ()) if unpositioned is None else unpositioned
    device = next(model.parameters()).device
    ids, mask = (tokens.cpu().numpy(), np.ones(tuple(tokens.shape), np.int64)) if isinstance(tokens, torch.Tensor) \
        else left_pad(tokens)
    check_padding(roles, unpositioned, mask, "the model")
    name = input_name or next(iter(getattr(model, "input_types", {}) or {"tokens": None}))
    chooser, seq = Chooser(options, ids, mask), torch.from_numpy(ids).to(device)
    was_training = model.training
    model.eval()
    try:
        with KVCache().attach(model, include) if use_cache else contextlib.nullcontext():
            step_in = seq
            while not chooser.done:
                with torch.inference_mode():
                    out = model(**{name: step_in}, **inputs, **_feeds(roles, mask, step_in.shape[1], device))
                    last = _logits(out, output)[:, -1].float().cpu().numpy()
                step = chooser.step(last)
                yield step
                nxt = torch.from_numpy(step.tokens[:, None]).to(device)
                mask = np.concatenate([mask, np.ones_like(mask[:, :1])], axis=1)
                if use_cache:
                    step_in = nxt
                else:  # no cache: re-run the whole sequence
                    step_in = seq = torch.cat((seq, nxt), dim=1)
    finally:
        model.train(was_training)


def generate(model: nn.Module, tokens: torch.Tensor | Sequence[Sequence[int]],
             options: GenerationOptions | int = GenerationOptions(), **kw: Any) -> torch.Tensor:
    """``tokens`` [B, T0] -> [B, T0 + n]: every step of :func:`stream` (``kw``: its keyword arguments) appended
    (rows of different lengths come back left-padded with id 0)."""
    ids = tokens if isinstance(tokens, torch.Tensor) else torch.from_numpy(left_pad(tokens)[0])
    steps = [torch.from_numpy(s.tokens[:, None]).to(ids.device) for s in stream(model, tokens, options, **kw)]
    return torch.cat([ids, *steps], dim=1)
