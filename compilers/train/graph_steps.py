"""The step of a one-graph task (:class:`~.tasks._base.GraphTask`) under the trainer (:mod:`.loop`): the graph is
the task's one network (role ``model``) with one optimizer; micro-batches, gradient accumulation, data
parallelism (DDP or FSDP; tensor parallel with FSDP over dp: :mod:`.tensor_parallel`), mixed precision, clipping,
truncated-BPTT carried state, evaluation.

One step's loss is L = 1/A Σ_a [L_task(a) + Σ_o w_o·mean(o) + λ₁ Σ|W|] over the A = ``grad_accum`` micro-batches
(auxiliary outputs o with weights ``loss.aux``, L1 ``optimizer.l1`` on the matrices). Micro-batch a of step s on
process r is slice (a·world + r) of one batch of A × global_batch examples drawn for s, so accumulation and data
parallelism both equal one big batch.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from . import amp
from .fsdp import load_model_state, load_optimizer_state, model_state, optimizer_state, shard
from .optim import l1_penalty, make_optimizer
from .tasks._base import HIGHER_IS_BETTER, Batch


class GraphSteps:
    """A one-graph task as the trainer runs it: ``optimizers`` {"model": ...}, :meth:`run_step`, :meth:`evaluate_split`."""

    eval_at_start = True  # log where training starts from (e.g. about ln(vocab) for a language model)
    nonfinite_hint = "lower the learning rate or set train.grad_clip"

    def __init__(self, tr: Any):
        self.tr, self.plan, self.d, self.cfg = tr, tr.plan, tr.d, tr.cfg
        self.model = self.plan.model
        self.ddp = None
        # sharded: the parameters are DTensors (FSDP, tensor parallel or both); checkpoints gather them
        self.sharded = self.d.active and (self.cfg["distributed"]["strategy"] == "fsdp" or self.d.tp > 1)
        policy = amp.fsdp_policy(self.cfg["precision"]) if self.sharded else None
        self.tp_plan = None
        if self.d.tp > 1:
            from .tensor_parallel import apply

            self.tp_plan = apply(tr.run, self.plan, self.d, mp_policy=policy)
        elif self.sharded:
            shard(self.model, mp_policy=policy)
        elif self.d.active:
            from torch.nn.parallel import DistributedDataParallel

            device = self.plan.device
            self.ddp = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.opt = make_optimizer(self.model, self.cfg["optimizer"])
        self.optimizers = {"model": self.opt}
        self.scaler = amp.make_scaler(self.cfg["precision"], self.plan.device, self.cfg["scaler"], self.sharded)
        self.skipped = 0  # fp16 updates skipped for an inf/NaN gradient
        self.carry: dict[str, torch.Tensor] = {}
        m = self.cfg["eval"]["metric"]
        self.metric = self.plan.task.metric if m == "auto" else m
        self.higher_is_better = HIGHER_IS_BETTER[self.metric]
        self.unit = self.plan.task.unit

    def total_steps(self) -> int:
        return self.plan.total_steps

    def describe(self) -> str:
        from .plan import describe
        from .tensor_parallel import left_whole

        return describe(self.plan, self.tr.run, self.d) + (left_whole(self.tp_plan) if self.tp_plan else "")

    def log_fields(self, lr: float) -> dict[str, float]:
        """What a train record adds after the task's numbers: the lr of the next update."""
        return {"lr": lr}

    def log_scaler(self) -> dict[str, float]:
        """fp16: the gradient scaler's scale and the updates it skipped."""
        return {"loss_scale": self.scaler.get_scale(), "skipped": self.skipped} if self.scaler else {}

    # ----- one optimizer step ------------------------------------------------
    def forward(self, batch: Batch, module: torch.nn.Module, micro: int | None = None) -> dict[str, torch.Tensor]:
        """Run the model; in training with truncated BPTT, carry state of micro-batch ``micro`` between steps."""
        inputs = dict(batch.inputs)
        carry = self.plan.state_map and micro is not None
        if carry and not batch.reset_state:
            inputs.update({k.partition("/")[2]: v for k, v in self.carry.items() if k.startswith(f"{micro}/")})
        with amp.autocast(self.cfg["precision"], self.plan.device):
            out = module(**inputs)
        outs = out if isinstance(out, dict) else {next(iter(self.plan.graph.outputs)): out}
        if carry:
            self.carry.update({f"{micro}/{inp}": outs[o].detach() for inp, o in self.plan.state_map.items()})
        return outs

    def loss_of(self, outs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The task's loss plus the weighted auxiliary outputs and the L1 penalty; the task's metric sums."""
        loss, stats = self.plan.task.loss(outs, batch)
        for name, w in self.plan.aux.items():
            loss = loss + w * outs[name].float().mean()
        l1 = self.cfg["optimizer"]["l1"]
        if l1:
            loss = loss + l1 * l1_penalty(self.model)
        return loss, stats

    def run_step(self, step: int) -> tuple[dict[str, torch.Tensor], int]:
        """One update at ``step``: ({"loss": the mean loss over the micro-batches}, examples or tokens seen)."""
        plan, accum, d = self.plan, self.cfg["grad_accum"], self.d
        module = self.ddp or self.model
        self.model.train()
        total, items = torch.zeros((), device=plan.device), 0
        for a in range(accum):
            batch = plan.task.train_batch(step, plan.global_batch * accum, a * d.dp_world + d.dp_rank,
                                          accum * d.dp_world).to(plan.device)
            with self._grad_sync(a == accum - 1):
                outs = self.forward(batch, module, a)
                loss, _ = self.loss_of(outs, batch)
                amp.backward(loss / accum, self.scaler)
            total += loss.detach() / accum
            items += batch.items
        trainable = (p for p in self.model.parameters() if p.requires_grad)
        self.skipped += not amp.update(self.opt, self.scaler, trainable, self.cfg["grad_clip"])
        return {"loss": total}, items

    def _grad_sync(self, last: bool) -> Any:
        """Average gradients across processes only after the last micro-batch of a step."""
        if hasattr(self.model, "set_requires_gradient_sync"):  # FSDP (tensor parallel alone has no data parallel)
            self.model.set_requires_gradient_sync(last)
        return nullcontext() if (self.ddp is None or last) else self.ddp.no_sync()

    # ----- evaluation --------------------------------------------------------
    @torch.no_grad()
    def evaluate_split(self, split: str) -> dict[str, float] | None:
        """The task's metrics over ``split`` (``eval.batches`` batches of val; all of test); None without data."""
        task = self.plan.task
        if not task.has_split(split):
            return None
        was = self.model.training
        self.model.eval()
        sums: dict[str, float] = {}
        bs = self.cfg["eval_batch_size"] or self.cfg["batch_size"]
        limit = self.cfg["eval"]["batches"] if split == "val" else None
        try:
            for batch in task.eval_batches(split, bs, limit):
                batch = batch.to(self.plan.device)
                _, stats = self.loss_of(self.forward(batch, self.model), batch)
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
        finally:
            self.model.train(was)
        return task.metrics(sums) if sums else None

    # ----- state for the checkpoint (see .resume) ------------------------------
    def model_state(self) -> dict[str, torch.Tensor]:
        """The full weights (spec keys); under FSDP a collective that leaves them on rank 0 only."""
        return model_state(self.model, self.sharded)

    def optimizer_states(self) -> dict[str, dict[str, Any]]:
        """The optimizer's full state (under FSDP gathered from the shards)."""
        return {"model": optimizer_state(self.model, self.opt, self.sharded)}

    def load_model(self, state: dict[str, torch.Tensor], path: Any = None) -> None:
        load_model_state(self.model, state, self.sharded)

    def load_optimizer(self, sd: dict[str, Any]) -> None:
        load_optimizer_state(self.model, self.opt, sd, self.sharded)
