"""Language modelling: next-token prediction (``language_model``) and BERT-style masked tokens (``masked_lm``).

Loss: cross-entropy of the predicted tokens, ``-1/N Σ_t log softmax(z_t)[y_t]`` over the N predicted positions
(all of them, or those of the ``loss_mask`` / the masked ones); metrics: the loss, the accuracy and the
perplexity exp(loss).

Seeds: masked_lm picks its positions and replacement tokens from a generator seeded by (seed, 4, m) for the
global batch of micro-step m, sliced per process.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import torch

from ..binding import Binding, bind, embedding_limit, output_classes, position_limit
from ..config import RunConfig
from ..data import ArrayData, PackedData, TokenData, step_generator
from ..losses import cross_entropy
from . import task
from ._base import Batch, rank_slice
from .classification import ClassificationTask


PACKED_FIELDS = ("tokens", "doc_ids", "positions")  # the graph inputs packed rows feed


@task("language_model")
class LanguageModelTask(ClassificationTask):
    """Next-token prediction on a token stream (random windows, or contiguous streams with truncated BPTT)
    or on synthetic sequences with a loss mask."""

    metric, unit = "loss", "tokens"

    @classmethod
    def build(cls, run: RunConfig, data: Any) -> "LanguageModelTask":
        if not isinstance(data, (TokenData, ArrayData, PackedData)):
            raise run.error("data", f"task '{cls.name}' needs text or token sequences")
        return super().build(run, data)

    def available(self) -> dict[str, Any]:
        if isinstance(self.data, PackedData):
            return dict.fromkeys(PACKED_FIELDS)
        return {"tokens": None} if isinstance(self.data, TokenData) else dict(self.data.fields)

    def make_binding(self) -> Binding:
        return bind(self.run, {k: v for k, v in self.available().items() if k != "loss_mask"}, self.name)

    @property
    def vocab(self) -> int:
        if isinstance(self.data, (TokenData, PackedData)):
            return self.data.vocab_size
        return int(self.data.meta["vocab_size"])

    @property
    def seq_len(self) -> int:
        tbptt = self.cfg["tbptt"]
        if isinstance(self.data, ArrayData):
            return int(self.data.fields["tokens"].shape[1]) - 1
        if isinstance(self.data, PackedData):
            return self.data.seq_len
        return tbptt or self.cfg["data"]["seq_len"]

    def check(self) -> None:
        inp = self.binding.input_for("tokens")
        if inp is None:
            raise self.run.error("task", f"task '{self.name}' needs an integer token input [batch, seq]; the graph has "
                                 f"{', '.join(self.run.graph.inputs)}", "map one with train.inputs: {NAME: tokens}")
        need = self.vocab + (1 if self.name == "masked_lm" and self.cfg["mlm"]["mask_token"] is None else 0)
        self._check_vocab(inp, need)
        self._check_length(inp)
        if isinstance(self.data, PackedData):
            self._check_packed()

    def _check_packed(self) -> None:
        """Packed rows need the graph to read doc_ids (the document mask) and positions (restarting per document)."""
        missing = [f for f in PACKED_FIELDS[1:] if self.binding.input_for(f) is None]
        if missing:
            raise self.run.error("data.pack", f"packed rows carry {' and '.join(missing)} but the graph has no "
                                 f"inputs of those names (inputs: {', '.join(self.run.graph.inputs)})",
                                 "add inputs doc_ids/positions {shape: [batch, seq], dtype: int64} feeding the "
                                 "attention's document mask and the position encoding, or set train.data.pack: false")

    def _check_vocab(self, inp: str, need: int) -> None:
        emb = embedding_limit(self.run.graph, inp)
        if emb and emb[1] < need:
            raise self.run.error("data", f"the data has a vocabulary of {need} tokens but embedding '{emb[0]}' has "
                                 f"num={emb[1]}", f"make the vocabulary at least {need} (e.g. --set vocab={need})")
        have = output_classes(self.run.graph, self.output)
        if have is not None and have < need:
            raise self.run.error("data", f"the data has a vocabulary of {need} tokens but output '{self.output}' "
                                 f"predicts {have}", f"--set vocab={need}")

    def _check_length(self, inp: str) -> None:
        pos = position_limit(self.run.graph)
        if pos and pos[1] < self.seq_len:
            raise self.run.error("data.seq_len", f"windows of {self.seq_len} tokens exceed {pos[0]}'s max_len={pos[1]}",
                                 f"lower train.data.seq_len to at most {pos[1]}")
        seq_dim = self.run.graph.inputs[inp].type.shape[1]
        if isinstance(seq_dim, int) and seq_dim != self.seq_len:
            raise self.run.error("data.seq_len", f"graph input '{inp}' has a fixed length {seq_dim} but the "
                                 f"windows have {self.seq_len} tokens", f"set train.data.seq_len: {seq_dim}")

    def steps_per_epoch(self, global_batch: int) -> int:
        if isinstance(self.data, PackedData):
            return self.data.batches_per_epoch(global_batch, self.seed)
        if isinstance(self.data, TokenData):
            return self.data.batches_per_epoch(global_batch, self.seq_len)
        return self.data.batches_per_epoch(global_batch)

    def has_split(self, split: str) -> bool:
        if isinstance(self.data, TokenData):
            return self.data.size(split) > self.seq_len
        return self.data.size(split) > 0

    def train_batch(self, m: int, global_batch: int, rank: int, world: int) -> Batch:
        reset = False
        if isinstance(self.data, PackedData):
            return self.make_batch(self.data.train_batch(m, global_batch, rank, world, self.seed), m, global_batch,
                                   rank, world)
        if isinstance(self.data, TokenData):
            if self.cfg["tbptt"]:
                fields, reset = self.data.stream_batch(m, global_batch, rank, world, self.cfg["tbptt"])
            else:
                fields = self.data.train_batch(m, global_batch, rank, world, self.seed, self.seq_len)
        else:
            fields = self.data.train_batch(m, global_batch, rank, world, self.seed)
        batch = self.make_batch(fields, m, global_batch, rank, world)
        batch.reset_state = reset
        return batch

    def eval_batches(self, split: str, batch: int, limit: int | None) -> Iterator[Batch]:
        if isinstance(self.data, TokenData):
            for k, fields in enumerate(self.data.eval_batches(split, batch, self.seq_len, limit)):
                yield self.make_batch(fields, -1 - k, fields["tokens"].shape[0], 0, 1)
        else:
            yield from super().eval_batches(split, batch, limit)

    def _fill(self, inputs: dict[str, torch.Tensor], tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        for name, how in self.binding.fill.items():
            inputs[name] = (torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long) if how == "length"
                            else torch.zeros_like(tokens))
        return inputs

    def make_batch(self, fields, m, global_batch, rank, world) -> Batch:  # noqa: ANN001
        if "doc_ids" in fields:
            return self._packed_batch(fields)
        tokens = fields["tokens"]
        inp = self.binding.input_for("tokens")
        x, y = tokens[:, :-1], tokens[:, 1:]  # [batch, seq]: predict token t+1 from tokens <= t
        target = {"y": y}
        if "loss_mask" in fields:
            target["mask"] = fields["loss_mask"]
        inputs = self._fill({inp: x}, x)
        return Batch(inputs, target, int(target.get("mask", y).sum() if "mask" in target else y.numel()))

    def _packed_batch(self, fields: dict[str, torch.Tensor]) -> Batch:
        """Packed rows: every token is an input; token t's target is token t+1, counted only inside one
        document (``fields["mask"]``), so no loss crosses a document boundary."""
        tokens, mask = fields["tokens"], fields["mask"]
        y = torch.cat([tokens[:, 1:], torch.zeros_like(tokens[:, :1])], 1)
        inputs = {self.binding.input_for(f): fields[f] for f in PACKED_FIELDS}
        return Batch(self._fill(inputs, tokens), {"y": y, "mask": mask}, int(mask.sum()))

    def loss(self, outs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, correct, count = cross_entropy(outs[self.output], batch.target["y"], batch.target.get("mask"),
                                             self.cfg["loss"]["label_smoothing"])
        return loss, {"loss_sum": loss.detach() * count, "count": count, "correct": correct}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        out = super().metrics(sums)
        out["perplexity"] = math.exp(min(out["loss"], 50.0))
        return out


@task("masked_lm")
class MaskedLMTask(LanguageModelTask):
    """BERT-style: pick mask_prob of the positions; 80% become [MASK], 10% a random token, 10% stay; predict them."""

    @property
    def seq_len(self) -> int:
        return self.cfg["data"]["seq_len"]

    def check(self) -> None:
        if not isinstance(self.data, TokenData):
            raise self.run.error("data", "task 'masked_lm' trains on a text stream (train.data: text or a .txt "
                                 "file, without pack)")
        super().check()

    def train_batch(self, m: int, global_batch: int, rank: int, world: int) -> Batch:
        fields = self.data.train_batch(m, global_batch, rank, world, self.seed, self.seq_len - 1)
        return self.make_batch(fields, m, global_batch, rank, world)

    def eval_batches(self, split: str, batch: int, limit: int | None) -> Iterator[Batch]:
        for k, fields in enumerate(self.data.eval_batches(split, batch, self.seq_len - 1, limit)):
            yield self.make_batch(fields, -1 - k, fields["tokens"].shape[0], 0, 1)

    def make_batch(self, fields, m, global_batch, rank, world) -> Batch:  # noqa: ANN001
        tokens = fields["tokens"]
        g = step_generator(self.seed, 4, m)
        shape = (global_batch, tokens.shape[1])
        pick = rank_slice(torch.rand(shape, generator=g), rank, world) < self.cfg["mlm"]["mask_prob"]
        how = rank_slice(torch.rand(shape, generator=g), rank, world)
        rand_tok = rank_slice(torch.randint(0, self.vocab, shape, generator=g), rank, world)
        mask_id = self.cfg["mlm"]["mask_token"]
        mask_id = self.vocab if mask_id is None else mask_id
        x = tokens.clone()
        x[pick & (how < 0.8)] = mask_id
        swap = pick & (how >= 0.8) & (how < 0.9)
        x[swap] = rand_tok[swap]
        inputs = self._fill({self.binding.input_for("tokens"): x}, x)
        return Batch(inputs, {"y": tokens, "mask": pick}, int(tokens.numel()))
