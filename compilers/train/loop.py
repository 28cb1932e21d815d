"""The training loop: micro-batches, gradient accumulation, mixed precision, clipping, evaluation,
early stopping, checkpoints and exact resume.

Everything that influences the result is either a function of the step (the
data, the learning rate, the task's random draws) or saved in the checkpoint
(weights, optimizer and scaler state, the torch RNG used by dropout, carried
recurrent state, the best metric and early-stopping counter), so a resumed run
continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch

from . import amp
from . import checkpoint as ck
from . import ckstate
from .config import RunConfig
from .distributed import Dist, mean_across
from .fsdp import load_model_state, load_optimizer_state, model_state, optimizer_state, shard
from .logging import MetricsLog, Progress, TensorBoard
from .longrun import INTERRUPTED, Watch
from .optim import l1_penalty, make_optimizer, make_scheduler
from .plan import Plan
from .tasks import HIGHER_IS_BETTER, Batch

#: configuration keys that may differ when resuming (how long and how often, not what is computed)
#: (checkpoints hold the full state, whether the run was sharded or not: ddp <-> fsdp may change)
RESUMABLE_CHANGES = ("steps", "epochs", "log", "checkpoint", "eval", "early_stopping", "device", "distributed")


class Trainer:
    def __init__(self, run: RunConfig, plan: Plan, out: Path, d: Dist, echo: Callable[[str], None]):
        self.run, self.plan, self.out, self.d, self.echo = run, plan, out, d, echo
        self.cfg = run.values
        self.model = plan.model
        self.ddp = None
        self.sharded = d.active and self.cfg["distributed"]["strategy"] == "fsdp"
        if self.sharded:
            shard(self.model)
        elif d.active:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(self.model, device_ids=[plan.device.index] if plan.device.type == "cuda" else None)
        self.opt = make_optimizer(self.model, self.cfg["optimizer"])
        self.sched = make_scheduler(self.opt, self.cfg["schedule"], self.cfg["optimizer"]["lr"], plan.total_steps)
        self.scaler = amp.make_scaler(self.cfg["precision"], plan.device, self.cfg["scaler"], self.sharded)
        self.skipped = 0  # fp16 updates skipped for an inf/NaN gradient
        self.step = 0
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.carry: dict[str, torch.Tensor] = {}
        self.metric = self._metric_name()
        self.ckpt_dir = out / "checkpoints"

    # ----- metric bookkeeping ------------------------------------------------
    def _metric_name(self) -> str:
        m = self.cfg["eval"]["metric"]
        return self.plan.task.metric if m == "auto" else m

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        delta = self.cfg["early_stopping"]["min_delta"] if self.cfg["early_stopping"] else 0.0
        return value > self.best + delta if HIGHER_IS_BETTER[self.metric] else value < self.best - delta

    # ----- checkpoints -------------------------------------------------------
    def _run_state(self) -> dict[str, Any]:
        return {"step": self.step, "best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals,
                "metric": self.metric, "skipped": self.skipped}

    def rank_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """Every process's RNG and carried state (gathered to all ranks; rank -> tensors)."""
        rng_t, _ = ck.rng_state(self.plan.device)
        local = {**{k: v.cpu() for k, v in rng_t.items()}, **{f"carry/{k}": v.cpu() for k, v in self.carry.items()}}
        if not self.d.active:
            return {"0": local}
        import torch.distributed as dist

        parts: list[Any] = [None] * self.d.world
        dist.all_gather_object(parts, local)
        return {str(r): p for r, p in enumerate(parts)}

    def model_state(self) -> dict[str, torch.Tensor]:
        """The full weights (spec keys); under FSDP a collective that leaves them on rank 0 only."""
        return model_state(self.model, self.sharded)

    def checkpoint_payload(self, ranks: dict[str, dict[str, torch.Tensor]], model_sd: dict[str, torch.Tensor],
                           opt_sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"model/{k}": v for k, v in model_sd.items()}
        opt_t, opt_meta = ck.flatten_optimizer(opt_sd)
        tensors.update(opt_t)
        _, rng_meta = ck.rng_state()
        for r, part in ranks.items():
            tensors.update({f"rank/{r}/{k}": v for k, v in part.items()})
        state = {"spec": self.run.graph.name, "fingerprint": self.run.graph.fingerprint(), "config": self.cfg,
                 "run": self._run_state(), "optimizer": opt_meta, "scheduler": self.sched.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler else None, "rng": rng_meta,
                 "world": self.d.world, "lora": self.plan.lora}
        return tensors, state

    def save_checkpoint(self, name: str | None = None) -> Path | None:
        """Rank 0 writes (every rank must call: the per-process states are gathered first)."""
        ranks = self.rank_state()
        model_sd, opt_sd = self.model_state(), optimizer_state(self.model, self.opt, self.sharded)
        if not self.d.main:
            return None
        tensors, state = self.checkpoint_payload(ranks, model_sd, opt_sd)
        return ck.save_step(self.ckpt_dir, name, self.step, tensors, state, self.cfg["checkpoint"]["keep"])

    def resume(self, ckpt: ck.Checkpoint) -> None:
        """Restore the run from ``ckpt``; a field that does not fit this run is a CheckpointError naming it."""
        st = ckpt.state
        ck.check_resumable(ckpt, self.run.graph, self.cfg, RESUMABLE_CHANGES)
        if st.get("world", 1) != self.d.world:
            raise ck.CheckpointError(f"'{ckpt.path}' was written by {st.get('world')} processes, this run has "
                                     f"{self.d.world}: resume with the same --nproc-per-node")
        if ckstate.lora_layers(ckpt) != list(self.plan.lora or []):
            raise ckstate.bad_field(ckpt, "lora", f"names the layers {ckstate.lora_layers(ckpt)}; this run adapts "
                                                  f"{list(self.plan.lora or [])}")
        r = ckstate.run_counters(ckpt)
        with ckstate.loading(ckpt, "model"):
            load_model_state(self.model, ckpt.group("model"), self.sharded)
        with ckstate.loading(ckpt, "optimizer"):
            sd = ck.unflatten_optimizer(ckpt, ckstate.field(ckpt, "optimizer"))
            ckstate.optimizer_state(ckpt, self.opt, sd, "optimizer", r["step"] - r["skipped"])
            load_optimizer_state(self.model, self.opt, sd, self.sharded)
        with ckstate.loading(ckpt, "scheduler"):
            self.sched.load_state_dict(ckstate.like(ckpt, "scheduler", st.get("scheduler"), self.sched.state_dict()))
        if self.scaler and st.get("scaler"):
            with ckstate.loading(ckpt, "scaler"):
                self.scaler.load_state_dict(ckstate.like(ckpt, "scaler", st["scaler"], self.scaler.state_dict()))
        with ckstate.loading(ckpt, "rng"):
            ck.set_rng_state(ckpt, ckstate.field(ckpt, "rng"), self.d.rank, self.plan.device)
        self.carry = {k: v.to(self.plan.device) for k, v in ckpt.group(f"rank/{self.d.rank}/carry").items()}
        self.step, self.best, self.best_step, self.bad_evals = r["step"], r["best"], r["best_step"], r["bad_evals"]
        self.skipped = r["skipped"]

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
        loss, stats = self.plan.task.loss(outs, batch)
        for name, w in self.plan.aux.items():
            loss = loss + w * outs[name].float().mean()
        l1 = self.cfg["optimizer"]["l1"]
        if l1:
            loss = loss + l1 * l1_penalty(self.model)
        return loss, stats

    def train_step(self) -> tuple[torch.Tensor, int]:
        plan, accum = self.plan, self.cfg["grad_accum"]
        module = self.ddp or self.model
        self.model.train()
        total, items = torch.zeros((), device=plan.device), 0
        for a in range(accum):
            # micro-batch a of this step is slice (a, rank) of one batch of accum x global_batch examples, so
            # accumulation and data parallelism both equal one big batch
            batch = plan.task.train_batch(self.step, plan.global_batch * accum, a * self.d.world + self.d.rank,
                                          accum * self.d.world).to(plan.device)
            with self._grad_sync(a == accum - 1):
                outs = self.forward(batch, module, a)
                loss, _ = self.loss_of(outs, batch)
                amp.backward(loss / accum, self.scaler)
            total += loss.detach() / accum
            items += batch.items
        trainable = (p for p in self.model.parameters() if p.requires_grad)
        self.skipped += not amp.update(self.opt, self.sched, self.scaler, trainable, self.cfg["grad_clip"])
        self.step += 1
        return total, items

    def _grad_sync(self, last: bool) -> Any:
        """Average gradients across processes only after the last micro-batch of a step."""
        if self.sharded:
            self.model.set_requires_gradient_sync(last)
        return nullcontext() if (self.ddp is None or last) else self.ddp.no_sync()

    # ----- evaluation --------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float] | None:
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
                outs = self.forward(batch, self.model)
                _, stats = self.loss_of(outs, batch)
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
        finally:
            self.model.train(was)
        return task.metrics(sums) if sums else None


def run_loop(tr: Trainer, log: MetricsLog | None, tb: TensorBoard | None, progress: Progress,
             until: int | None = None, watch: Watch | None = None) -> dict[str, Any]:
    """Train from ``tr.step`` to the end (or an early stop, a stop signal ``watch`` saw, or step ``until``); returns
    the last val metrics and why it stopped. The last step of the run always evaluates and checkpoints; ``until``
    does not. ``watch`` also asks for checkpoints every ``checkpoint.every_minutes``."""
    plan, cfg, d = tr.plan, tr.cfg, tr.d
    log_every = cfg["log"]["every"]
    es = cfg["early_stopping"]
    acc_loss, acc_items, acc_steps, t0 = torch.zeros((), device=plan.device), 0, 0, time.perf_counter()
    last_val: dict[str, float] | None = None
    stopped = "steps"
    if tr.step == 0:  # where training starts from (e.g. about ln(vocab) for a language model)
        val = tr.evaluate("val")
        if val is not None and log is not None:
            log.write({"step": 0, "split": "val", **val})
        if val is not None and tb is not None:
            tb.scalars("val", 0, val)
    while tr.step < min(plan.total_steps, until or plan.total_steps):
        loss, items = tr.train_step()
        acc_loss += loss
        acc_items += items
        acc_steps += 1
        step = tr.step
        if step % log_every == 0 or step == plan.total_steps:
            mean = float(mean_across(d, acc_loss / acc_steps))
            if not math.isfinite(mean):
                raise FloatingPointError(f"the training loss became {mean} at step {step}; lower the learning rate "
                                         "or set train.grad_clip")
            dt = max(time.perf_counter() - t0, 1e-9)
            rate = acc_items * d.world / dt
            lr = tr.sched.get_last_lr()[0]
            if log is not None:
                scale = {"loss_scale": tr.scaler.get_scale(), "skipped": tr.skipped} if tr.scaler else {}
                log.write({"step": step, "split": "train", "loss": mean, "lr": lr,
                           "throughput": rate, "unit": plan.task.unit, "time": time.time(), **scale})
            if tb is not None:
                tb.scalars("train", step, {"loss": mean, "lr": lr, "throughput": rate})
            progress.update(step, mean, lr, rate)
            acc_loss, acc_items, acc_steps, t0 = torch.zeros((), device=plan.device), 0, 0, time.perf_counter()
        else:
            progress.update(step)
        paused = time.perf_counter()  # evaluation and checkpoints do not count against training throughput
        if step % plan.eval_every == 0 or step == plan.total_steps:
            val = tr.evaluate("val")
            if val is not None:
                last_val = val
                if log is not None:
                    log.write({"step": step, "split": "val", **val})
                if tb is not None:
                    tb.scalars("val", step, val)
                value = val.get(tr.metric, val["loss"])
                if tr.improved(value):
                    tr.best, tr.best_step, tr.bad_evals = value, step, 0
                    tr.save_checkpoint("best.safetensors")
                else:
                    tr.bad_evals += 1
                if es and tr.bad_evals >= es["patience"]:
                    stopped = f"early stop: no {tr.metric} improvement in {es['patience']} evaluations"
        signum, due = watch.poll() if watch else (0, False)
        if signum and stopped == "steps":
            stopped = INTERRUPTED
        if step % plan.ckpt_every == 0 or step == plan.total_steps or stopped != "steps" or due:
            tr.save_checkpoint()
            if watch:
                watch.saved()
        t0 += time.perf_counter() - paused
        if stopped != "steps":
            break
    return {"val": last_val, "stopped": stopped}
