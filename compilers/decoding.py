"""What a decoder's graph inputs mean to incremental decoding, and left padding: torch-free, back-end free.

With a KV cache each step feeds only the new tokens, so every other graph input of a decoder is one of:

* ``key_padding`` -- read by a self-attention's ``key_padding`` slot ([B, S] bool, True = padding): it
  describes every *key*, so each step feeds it for the whole sequence so far, past + new ([B, P + T]);
* ``positions`` -- read by a ``positions`` slot (learned/sinusoidal position embeddings, attention with
  per-row positions): each step feeds the new tokens' positions ([B, T]);
* ``fixed`` -- anything else (an encoder-decoder's memory and source lengths): the same every step.

Left padding (Hugging Face's convention for batched decoding): rows of different lengths are padded on
the left to one length; ``mask`` [B, T] is 1 for real tokens. Each row's positions count its real tokens,
``position = cumsum(mask) - 1`` (0 at pads, whose outputs nobody reads), so a row's first real token is at
position 0 whatever its padding; the padded keys are masked for every query by ``key_padding = ¬mask``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: the input slots whose graph inputs change meaning with a KV cache (slot name -> role)
SLOT_ROLES = {"key_padding": "key_padding", "positions": "positions"}


def input_roles(graph: Any) -> dict[str, str]:
    """Graph input name -> ``key_padding`` | ``positions`` for the inputs those slots read (others: fixed)."""
    roles: dict[str, str] = {}
    for node in graph.nodes.values():
        for slot, ref in node.inputs.items():
            if ref is not None and ref.node in graph.inputs and slot in SLOT_ROLES:
                roles[ref.node] = SLOT_ROLES[slot]
    return roles


def unpositioned(graph: Any) -> list[str]:
    """Position-embedding nodes that read no ``positions`` input: they count positions from 0 for every row,
    which left padding shifts. (Relative encodings -- RoPE, ALiBi, T5 buckets -- depend on i - j only, which
    padding leaves alone.)"""
    return [n.name for n in graph.nodes.values()
            if n.op == "position_embedding" and n.inputs.get("positions") is None]


def decoding_facts(graph: Any) -> dict[str, Any]:
    """``{"input_roles": input_roles(graph), "unpositioned": unpositioned(graph)}``: what a decoder must know about
    a graph's inputs, derived here once and stored with each back end's model -- the ONNX file's
    ``nngraph.kv_cache`` metadata and the generated torch class's ``input_roles`` / ``unpositioned`` attributes --
    so both decoders read it from the model instead of asking the caller."""
    return {"input_roles": input_roles(graph), "unpositioned": unpositioned(graph)}


def left_pad(rows: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [B, T] int64, mask [B, T] int64): ``rows`` right-aligned, ``pad_id`` and mask 0 before each."""
    width = max(len(r) for r in rows)
    tokens = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        if len(r):
            tokens[i, width - len(r):] = r
            mask[i, width - len(r):] = 1
    return tokens, mask


def positions_of(mask: np.ndarray) -> np.ndarray:
    """Per-row positions of a left-padded prompt: ``max(cumsum(mask) - 1, 0)`` [B, T] int64."""
    return np.maximum(np.cumsum(mask, axis=-1) - 1, 0).astype(np.int64)


def step_feeds(roles: dict[str, str], mask: np.ndarray, new: int) -> dict[str, np.ndarray]:
    """The ``key_padding`` ([B, P + T] bool) and ``positions`` ([B, T], the last ``new`` of the row) inputs of a
    step, from the mask of the whole sequence so far [B, P + T]."""
    out: dict[str, np.ndarray] = {}
    for name, role in roles.items():
        out[name] = (mask == 0) if role == "key_padding" else positions_of(mask)[:, -new:]
    return out


def check_padding(roles: dict[str, str], absolute: Sequence[str], mask: np.ndarray, what: str) -> None:
    """ValueError when some rows are padded but the model cannot be told: no key_padding input, or position
    embeddings (``absolute``, from :func:`unpositioned`) without a positions input."""
    if not mask.all() and "key_padding" not in roles.values():
        raise ValueError(f"{what} has no key_padding input to mask padded keys, so rows of different lengths "
                         "cannot be decoded together: give rows of one length, or add an input "
                         "key_padding: {shape: [batch, seq], dtype: bool} read by every self-attention's mask "
                         "(mask: {all: [causal, key_padding]})")
    if not mask.all() and absolute:
        raise ValueError(f"{what}'s position embedding '{absolute[0]}' reads no positions input, so left-padded "
                         "rows would start at the wrong position: give rows of one length, or add an input "
                         "positions: {shape: [batch, seq], dtype: int64} and connect it (in: {x: ..., positions: "
                         "positions})")
