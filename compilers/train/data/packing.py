"""Packed documents for language modelling (``train.data.pack: true``).

A document is one blank-line-separated block of a text file (or bundled corpus), or one line of a JSONL
file. Documents longer than a row are cut into row-sized pieces, each its own document. Rows of
``seq_len`` tokens are filled greedily, in a seeded order, with whole documents; each token carries

* ``doc_ids``: which document of its row it belongs to (0, 1, ...; the padding at a row's end is one more
  id, so it attends only to itself),
* ``positions``: its index inside its document (0 at each document's first token),
* ``mask``: whether its target counts: the target of token t is token t+1 of the *same* document, so a
  document's last token and the padding predict nothing (loss never crosses a boundary).

Order: epoch ``e`` packs the training documents in the permutation seeded by (seed, 5, e) and the global
batch of micro-step m is rows ``j*B..(j+1)*B`` (``e, j = divmod(m, batches_per_epoch)``, wrapping when a
later epoch packs into fewer rows), so a batch is a pure function of (seed, m): a resumed run, whose data
cursor is its step, sees exactly the batches the uninterrupted run would have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from .base import DataError, _slice, split_indices, step_generator

PACK_STREAM = 5  # the step_generator stream of the packing order (0-4 are taken)


def split_documents(text: str) -> list[str]:
    """Blank-line-separated blocks of ``text``, each ending in one newline (the document's last token)."""
    blocks = [b.strip("\n") for b in text.replace("\r\n", "\n").split("\n\n")]
    return [b + "\n" for b in blocks if b.strip()]


def chunk(docs: list[torch.Tensor], limit: int) -> list[torch.Tensor]:
    """Documents longer than ``limit`` tokens cut into pieces of at most ``limit`` (documents of 1 token,
    which predict nothing, dropped)."""
    return [p for d in docs for p in torch.split(d, limit) if p.numel() > 1]


def pack_rows(docs: list[torch.Tensor], order: list[int], seq_len: int) -> dict[str, torch.Tensor]:
    """Greedy packing of ``docs`` (each <= seq_len tokens) in ``order`` into [rows, seq_len] tensors
    ``tokens``, ``doc_ids``, ``positions`` and ``mask`` (see the module docstring)."""
    rows: list[list[torch.Tensor]] = [[]]
    used = 0
    for i in order:
        n = docs[i].numel()
        if used + n > seq_len:
            rows.append([])
            used = 0
        rows[-1].append(docs[i])
        used += n
    return _stack([_row(r, seq_len) for r in rows if r])


def _row(parts: list[torch.Tensor], seq_len: int) -> dict[str, torch.Tensor]:
    used = sum(p.numel() for p in parts)
    pad = seq_len - used
    tokens = torch.cat([*parts, torch.zeros(pad, dtype=torch.long)])
    lengths = [p.numel() for p in parts] + ([pad] if pad else [])
    doc_ids = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    positions = torch.cat([torch.arange(n) for n in lengths])
    counted = [torch.arange(p.numel()) < p.numel() - 1 for p in parts]  # all but each document's last token
    mask = torch.cat([*counted, torch.zeros(pad, dtype=torch.bool)])
    return {"tokens": tokens, "doc_ids": doc_ids, "positions": positions, "mask": mask}


def _stack(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


@dataclass
class PackedData:
    """Tokenized documents per split, packed into rows of ``seq_len`` tokens."""

    docs: dict[str, list[torch.Tensor]]
    vocab_size: int
    seq_len: int
    tokenizer: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = "packed"
    _cache: dict[Any, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def size(self, split: str) -> int:
        return sum(d.numel() for d in self.docs.get(split, []))

    def rows(self, split: str, seed: int | None = None, epoch: int = 0) -> dict[str, torch.Tensor]:
        """The split packed in document order (``seed`` None) or in the seeded order of ``epoch``."""
        key = (split, seed, epoch)
        if key not in self._cache:
            n = len(self.docs[split])
            order = list(range(n)) if seed is None else \
                torch.randperm(n, generator=step_generator(seed, PACK_STREAM, epoch)).tolist()
            if len(self._cache) >= 4:  # the current epoch, the next and the eval splits
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = pack_rows(self.docs[split], order, self.seq_len)
        return self._cache[key]

    def batches_per_epoch(self, global_batch: int, seed: int = 0) -> int:
        return max(self.rows("train", seed, 0)["tokens"].shape[0] // global_batch, 1)

    def train_batch(self, m: int, global_batch: int, rank: int, world: int, seed: int) -> dict[str, torch.Tensor]:
        """The global batch of micro-step ``m`` (rows of epoch e's packing), rank ``rank``'s slice."""
        epoch, j = divmod(m, self.batches_per_epoch(global_batch, seed))
        rows = self.rows("train", seed, epoch)
        idx = (torch.arange(j * global_batch, (j + 1) * global_batch) % rows["tokens"].shape[0])
        idx = idx[_slice(global_batch, rank, world)]
        return {k: v[idx] for k, v in rows.items()}

    def eval_batches(self, split: str, batch: int, limit: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """The split packed in document order, ``batch`` rows at a time."""
        if not self.docs.get(split):
            return
        rows = self.rows(split)
        for k, start in enumerate(range(0, rows["tokens"].shape[0], batch)):
            if limit is not None and k >= limit:
                return
            yield {name: v[start:start + batch] for name, v in rows.items()}


def packed_data(docs: list[str], tok: Any, seq_len: int, val: float, test: float, seed: int,
                source: str) -> PackedData:
    """Documents -> token ids (cut to ``seq_len``) split into train/val/test by a seeded document shuffle."""
    if not docs:
        raise DataError(f"{source}: no documents (blank-line-separated blocks of text) to pack")
    ids = chunk([tok.encode(d, source) for d in docs], seq_len)
    splits = split_indices(len(ids), val, test, seed)
    by_split = {k: [ids[i] for i in v.tolist()] for k, v in splits.items()}
    if not by_split.get("train"):
        raise DataError(f"{source}: too few documents ({len(ids)}) to leave any for training; lower val_fraction")
    return PackedData(by_split, tok.vocab_size, seq_len, tok,
                      {"name": source.rsplit("/", 1)[-1], "documents": len(ids), "tokens": sum(map(len, ids))})
