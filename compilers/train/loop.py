"""The training loop, one for every task: a one-graph task (:class:`~.graph_steps.GraphSteps`) and a task over a
spec's networks (:class:`~.tasks._base.NetworksTask`) run through the same :class:`Trainer` and :func:`run_loop`.

The trainer maps roles to networks and optimizers (a one-graph task has one role, ``model``), sets the lr of every
step from the one schedule (:class:`.optim.Schedule`), counts steps, keeps the best metric and the early-stopping
counter, and writes and restores checkpoints through one list of parts (:mod:`.resume`).

Everything that influences the result is either a function of the step (the data, the learning rate, the task's
random draws) or saved in the checkpoint (weights, optimizer and scaler state, the torch RNG used by dropout,
carried recurrent state, the task's own state, the best metric and early-stopping counter), so a resumed run
continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..state import checkpoint as ck
from . import resume
from .config import RunConfig
from .distributed import Dist, mean_across
from .logging import MetricsLog, Progress
from .trackers import Trackers
from .longrun import INTERRUPTED, Watch
from .optim import Schedule
from .plan import Plan


class Trainer:
    """One run: the task and its networks (``nets``, by role ``roles``) and optimizers, the schedule, the counters.

    ``plan`` (:func:`.plan.build_plan`) describes a one-graph run; a spec with ``networks:`` has none."""

    def __init__(self, run: RunConfig, plan: Plan | None, out: Path, d: Dist, echo: Callable[[str], None]):
        self.run, self.plan, self.out, self.d, self.echo = run, plan, out, d, echo
        self.cfg = run.values
        self.networks = plan is None
        self.device = torch.device("cpu") if plan is None else plan.device
        if plan is not None:  # one graph: one network, role "model"
            self.nets, self.roles = {"model": plan.model}, {"model": "model"}
        self.task = self._networks_task() if plan is None else _graph_steps(self)
        self.total = self.task.total_steps()
        self.eval_every = self.cfg["eval"]["every"] or max(self.total // 10, 1)
        self.ckpt_every = self.cfg["checkpoint"]["every"] or self.eval_every
        self.schedule = Schedule(self.task.optimizers, self.cfg["schedule"], self.total)
        self.schedule.apply(0)
        self.metric = self.task.metric
        self.step = 0
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.ckpt_dir = out / "checkpoints"

    def _networks_task(self) -> Any:
        """Build the spec's networks (seeded by ``train.seed``) and the task that trains them by role."""
        from nngraph.compilers.torch.networks import build_networks
        from nngraph.spec.networks import roles_of

        from .tasks import lookup

        if self.cfg["threads"]:
            torch.set_num_threads(self.cfg["threads"])
        torch.manual_seed(self.cfg["seed"])
        self.nets = build_networks(self.run.graph, seed=self.cfg["seed"])
        self.roles = roles_of(self.cfg["task"], self.cfg)
        return lookup(self.cfg["task"], networks=True)(self)

    # ----- steps and evaluation --------------------------------------------------------------
    def train_step(self) -> tuple[dict[str, Any], int]:
        """One update, then the schedule's lr for the next one: (the task's numbers, examples/tokens/steps done)."""
        stats, items = self.task.run_step(self.step)
        self.step += 1
        self.schedule.apply(self.step)
        return stats, items

    def evaluate(self, split: str = "val") -> dict[str, float] | None:
        return self.task.evaluate_split(split)

    def improved(self, value: float) -> bool:
        """Whether ``value`` of the metric beats the best by more than ``early_stopping.min_delta``."""
        if self.best is None:
            return True
        delta = self.cfg["early_stopping"]["min_delta"] if self.cfg["early_stopping"] else 0.0
        return value > self.best + delta if self.task.higher_is_better else value < self.best - delta

    # ----- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, name: str | None = None) -> Path | None:
        """Rank 0 writes (every rank must call: the per-process states are gathered first)."""
        gathered = resume.gather(self)
        if not self.d.main:
            return None
        tensors, state = resume.payload(self, gathered)
        return ck.save_step(self.ckpt_dir, name, self.step, tensors, state, self.cfg["checkpoint"]["keep"])

    def resume(self, ckpt: ck.Checkpoint) -> None:
        """Restore the run from ``ckpt`` (:func:`.resume.restore`) and set the lr of its next step."""
        resume.restore(self, ckpt)
        self.schedule.apply(self.step)


def _graph_steps(tr: Trainer) -> Any:
    from .graph_steps import GraphSteps

    return GraphSteps(tr)


class _Window:
    """The numbers of the train steps since the last log line: sums and counts per key (a key may appear at some
    steps only, e.g. a loss after warmup), items and wall time."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.items, self.t0 = 0, time.perf_counter()

    def add(self, stats: dict[str, Any], items: int) -> None:
        for k, v in stats.items():  # tensors stay on the device (no sync per step); other numbers become floats
            self.sums[k] = self.sums.get(k, 0.0) + (v if isinstance(v, torch.Tensor) else float(v))
            self.counts[k] = self.counts.get(k, 0) + 1
        self.items += items

    def means(self, d: Dist) -> dict[str, float]:
        """Mean of each key over its steps (a tensor also over the processes)."""
        return {k: float(mean_across(d, v / self.counts[k]) if isinstance(v, torch.Tensor) else v / self.counts[k])
                for k, v in self.sums.items()}


def _log_train(tr: Trainer, window: _Window, log: MetricsLog | None, tb: Trackers | None,
               progress: Progress) -> None:
    """One train record: the window's mean numbers, the lr of the next step, throughput (items · world / s)."""
    step, means = tr.step, window.means(tr.d)
    bad = [k for k, v in means.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"the training {bad[0]} became {means[bad[0]]} at step {step}; "
                                 f"{tr.task.nonfinite_hint}")
    rate = window.items * tr.d.dp_world / max(time.perf_counter() - window.t0, 1e-9)
    lr = tr.schedule.lr(step)
    if log is not None:
        log.write({"step": step, "split": "train", **means, **tr.task.log_fields(lr), "throughput": rate,
                   "unit": tr.task.unit, "time": time.time(), **tr.task.log_scaler()})
    if tb is not None:
        tb.scalars("train", step, {**means, "lr": lr, "throughput": rate})
    progress.update(step, means.get("loss", 0.0), lr, rate)


def _log_val(tr: Trainer, step: int, val: dict[str, float], log: MetricsLog | None, tb: Trackers | None) -> None:
    if log is not None:
        log.write({"step": step, "split": "val", **val})
    if tb is not None:
        tb.scalars("val", step, val)


def _evaluate(tr: Trainer, log: MetricsLog | None, tb: Trackers | None) -> tuple[dict[str, float] | None, bool]:
    """Evaluate on val, log it, keep the best (checkpointed as ``best.safetensors``); (metrics, early stop?)."""
    val = tr.evaluate("val")
    if val is None:
        return None, False
    _log_val(tr, tr.step, val, log, tb)
    value = val.get(tr.metric, val.get("loss"))
    if value is not None and tr.improved(value):
        tr.best, tr.best_step, tr.bad_evals = value, tr.step, 0
        tr.save_checkpoint("best.safetensors")
    elif value is not None:
        tr.bad_evals += 1
    es = tr.cfg["early_stopping"]
    return val, bool(es and tr.bad_evals >= es["patience"])


def run_loop(tr: Trainer, log: MetricsLog | None, tb: Trackers | None, progress: Progress,
             until: int | None = None, watch: Watch | None = None) -> dict[str, Any]:
    """Train from ``tr.step`` to the end (or an early stop, a stop signal ``watch`` saw, or step ``until``); returns
    the last val metrics and why it stopped. The last step of the run always evaluates and checkpoints; ``until``
    does not. ``watch`` also asks for checkpoints every ``checkpoint.every_minutes``."""
    last_val: dict[str, float] | None = None
    stopped = "steps"
    if tr.step == 0 and tr.task.eval_at_start:
        val = tr.evaluate("val")
        if val is not None:
            _log_val(tr, 0, val, log, tb)
    window = _Window()
    while tr.step < min(tr.total, until or tr.total):
        window.add(*tr.train_step())
        step = tr.step
        if step % tr.cfg["log"]["every"] == 0 or step == tr.total:
            _log_train(tr, window, log, tb, progress)
            window = _Window()
        else:
            progress.update(step)
        paused = time.perf_counter()  # evaluation and checkpoints do not count against training throughput
        if step % tr.eval_every == 0 or step == tr.total:
            val, early = _evaluate(tr, log, tb)
            last_val = val if val is not None else last_val
            if early:
                stopped = f"early stop: no {tr.metric} improvement in {tr.cfg['early_stopping']['patience']} evaluations"
        signum, due = watch.poll() if watch else (0, False)
        if signum and stopped == "steps":
            stopped = INTERRUPTED
        if step % tr.ckpt_every == 0 or step == tr.total or stopped != "steps" or due:
            tr.save_checkpoint()
            if watch:
                watch.saved()
        window.t0 += time.perf_counter() - paused
        if stopped != "steps":
            break
    return {"val": last_val, "stopped": stopped}
