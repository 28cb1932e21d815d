"""Datasets the trainer understands, and deterministic batching.

Four shapes of data cover every task:

* :class:`ArrayData` -- examples as rows of named tensors (``x``, ``y``,
  ``tokens``, ``loss_mask``...) with train/val/test index splits;
* :class:`TokenData` -- a token stream per split (language modeling);
* :class:`NodeGraphData` -- one graph with node features, labels and split masks;
* :class:`GraphSetData` -- many small graphs, each with a label, batched by
  concatenation (a ``batch`` vector maps nodes to graphs).

Batches are a pure function of (seed, micro-step, rank): the global batch of
micro-step ``m`` is drawn from a permutation seeded by ``(seed, epoch)`` (or a
generator seeded by ``(seed, m)``), and rank ``r`` of ``world`` takes slice
``r``. So the data position of a checkpoint is just the step number, a resumed
run sees exactly the batches it would have seen, and N processes with batch B
see the same examples as one process with batch N·B.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch


class DataError(ValueError):
    """Bad or unusable data; the message names the file (and row) when there is one."""


def step_generator(seed: int, stream: int, step: int) -> torch.Generator:
    """A generator for (seed, stream, step): independent across streams and steps, reproducible."""
    return torch.Generator().manual_seed((seed * 1_000_003 + stream * 7_919 + step * 104_729) % (2**63 - 1))


def _epoch_perm(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=step_generator(seed, 1, epoch))


def _slice(global_size: int, rank: int, world: int) -> slice:
    per = global_size // world
    return slice(rank * per, (rank + 1) * per)


@dataclass
class ArrayData:
    """Examples as rows: ``fields[name][i]`` is example i; ``splits`` hold row indices. ``augment``: applied to the
    training batches' ``x`` (:class:`.augment.Augment`), never to evaluation batches."""

    fields: dict[str, torch.Tensor]
    splits: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = "array"
    augment: Any = None

    def size(self, split: str) -> int:
        return int(self.splits[split].numel()) if split in self.splits else 0

    def batches_per_epoch(self, global_batch: int) -> int:
        return max(self.size("train") // global_batch, 1)

    def train_batch(self, m: int, global_batch: int, rank: int, world: int, seed: int) -> dict[str, torch.Tensor]:
        n = self.size("train")
        if global_batch > n:
            raise DataError(f"the training split has {n} examples, fewer than one global batch of {global_batch}; "
                            "lower batch_size")
        bpe = self.batches_per_epoch(global_batch)
        epoch, j = divmod(m, bpe)
        idx = self.splits["train"][_epoch_perm(n, seed, epoch)[j * global_batch:(j + 1) * global_batch]]
        rows = _slice(global_batch, rank, world)
        out = {k: v[idx[rows]] for k, v in self.fields.items()}
        if self.augment is not None:  # the global batch's draws, so N processes see one process's batch
            out["x"] = self.augment(out["x"], step_generator(seed, 3, m), global_batch, rows)
        return out

    def eval_batches(self, split: str, batch: int, limit: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        rows = self.splits.get(split)
        if rows is None:
            return
        for k, start in enumerate(range(0, rows.numel(), batch)):
            if limit is not None and k >= limit:
                return
            idx = rows[start:start + batch]
            yield {name: v[idx] for name, v in self.fields.items()}


@dataclass
class TokenData:
    """A token stream per split and the tokenizer that made it."""

    streams: dict[str, torch.Tensor]
    vocab_size: int
    tokenizer: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = "tokens"

    def size(self, split: str) -> int:
        return int(self.streams[split].numel()) if split in self.streams else 0

    def batches_per_epoch(self, global_batch: int, seq_len: int) -> int:
        return max(self.size("train") // (global_batch * seq_len), 1)

    def train_batch(self, m: int, global_batch: int, rank: int, world: int, seed: int, seq_len: int) -> dict[str, torch.Tensor]:
        """Random windows of ``seq_len + 1`` tokens (inputs and shifted targets)."""
        stream = self.streams["train"]
        span = stream.numel() - seq_len - 1
        if span < 1:
            raise DataError(f"the training text has {stream.numel()} tokens, too few for windows of {seq_len + 1}; "
                            "lower data.seq_len")
        starts = torch.randint(0, span + 1, (global_batch,), generator=step_generator(seed, 2, m))
        starts = starts[_slice(global_batch, rank, world)]
        offs = torch.arange(seq_len + 1)
        return {"tokens": stream[starts[:, None] + offs[None, :]]}

    def stream_batch(self, m: int, global_batch: int, rank: int, world: int, window: int) -> tuple[dict[str, torch.Tensor], bool]:
        """Truncated BPTT: the stream cut into ``global_batch`` rows read left to right, ``window`` at a time.

        Returns the batch (``window + 1`` tokens per row) and whether it starts
        a new pass (the carried state must be reset).
        """
        stream = self.streams["train"]
        per_row = (stream.numel() - 1) // global_batch
        windows = per_row // window
        if windows < 1:
            raise DataError(f"the training text has {stream.numel()} tokens, too few for {global_batch} streams "
                            f"of one {window}-token window; lower batch_size or tbptt")
        k = m % windows
        rows = torch.arange(global_batch)[_slice(global_batch, rank, world)]
        starts = rows * per_row + k * window
        offs = torch.arange(window + 1)
        return {"tokens": stream[starts[:, None] + offs[None, :]]}, k == 0

    def eval_batches(self, split: str, batch: int, seq_len: int, limit: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Non-overlapping windows over the split, in order."""
        stream = self.streams.get(split)
        if stream is None or stream.numel() < seq_len + 1:
            return
        n = (stream.numel() - 1) // seq_len
        starts = torch.arange(n) * seq_len
        offs = torch.arange(seq_len + 1)
        for k, s in enumerate(range(0, n, batch)):
            if limit is not None and k >= limit:
                return
            yield {"tokens": stream[starts[s:s + batch, None] + offs[None, :]]}


@dataclass
class NodeGraphData:
    """One graph: node features ``x`` [N, F], ``edge_index`` [2, E], labels ``y`` [N], boolean split masks."""

    x: torch.Tensor
    edge_index: torch.Tensor
    y: torch.Tensor
    masks: dict[str, torch.Tensor]
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = "node_graph"

    def size(self, split: str) -> int:
        return int(self.masks[split].sum()) if split in self.masks else 0

    def batches_per_epoch(self, global_batch: int) -> int:
        return 1

    def full(self, split: str) -> dict[str, torch.Tensor]:
        return {"x": self.x, "edge_index": self.edge_index, "y": self.y, "mask": self.masks[split]}

    def train_batch(self, m: int, global_batch: int, rank: int, world: int, seed: int) -> dict[str, torch.Tensor]:
        return self.full("train")

    def eval_batches(self, split: str, batch: int, limit: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        if split in self.masks and bool(self.masks[split].any()):
            yield self.full(split)


@dataclass
class GraphSetData:
    """Many graphs ``(x [n_i, F], edge_index [2, e_i], y)``; a batch concatenates them."""

    graphs: list[tuple[torch.Tensor, torch.Tensor, int]]
    splits: dict[str, torch.Tensor]
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = "graph_set"

    def size(self, split: str) -> int:
        return int(self.splits[split].numel()) if split in self.splits else 0

    def batches_per_epoch(self, global_batch: int) -> int:
        return max(self.size("train") // global_batch, 1)

    def collate(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        xs, edges, batch, ys, offset = [], [], [], [], 0
        for g, i in enumerate(idx.tolist()):
            x, e, y = self.graphs[i]
            xs.append(x)
            edges.append(e + offset)
            batch.append(torch.full((x.shape[0],), g, dtype=torch.long))
            ys.append(y)
            offset += x.shape[0]
        return {"x": torch.cat(xs), "edge_index": torch.cat(edges, dim=1), "batch": torch.cat(batch),
                "y": torch.tensor(ys, dtype=torch.long)}

    def train_batch(self, m: int, global_batch: int, rank: int, world: int, seed: int) -> dict[str, torch.Tensor]:
        n = self.size("train")
        if global_batch > n:
            raise DataError(f"the training split has {n} graphs, fewer than one global batch of {global_batch}; "
                            "lower batch_size")
        epoch, j = divmod(m, self.batches_per_epoch(global_batch))
        idx = self.splits["train"][_epoch_perm(n, seed, epoch)[j * global_batch:(j + 1) * global_batch]]
        return self.collate(idx[_slice(global_batch, rank, world)])

    def eval_batches(self, split: str, batch: int, limit: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        rows = self.splits.get(split)
        if rows is None:
            return
        for k, start in enumerate(range(0, rows.numel(), batch)):
            if limit is not None and k >= limit:
                return
            yield self.collate(rows[start:start + batch])


def split_indices(n: int, val: float, test: float, seed: int) -> dict[str, torch.Tensor]:
    """A seeded shuffle of ``range(n)`` cut into train / val / test (empty splits left out)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test, n_val = int(round(n * test)), int(round(n * val))
    out = {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}
    return {k: v for k, v in out.items() if v.numel() or k == "train"}


def split_stream(tokens: torch.Tensor, val: float, test: float, block: int = 1024) -> dict[str, torch.Tensor]:
    """Token stream -> splits by interleaved blocks (every k-th block to val), so each split samples the whole text."""
    blocks = list(torch.split(tokens, block))
    out: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}
    period_val = round(1 / val) if val > 0 else 0
    period_test = round(1 / test) if test > 0 else 0
    for i, b in enumerate(blocks):
        if period_test and i % period_test == period_test - 1:
            out["test"].append(b)
        elif period_val and i % period_val == period_val // 2:
            out["val"].append(b)
        else:
            out["train"].append(b)
    return {k: torch.cat(v) for k, v in out.items() if v}
