"""Where the trainer's step time goes: ``Trainer.train_step`` itself (one process, one torch thread), timed whole
and by phase, for several configurations of one spec side by side.

Phases (per step, medians over alternating rounds, CPU time of the process):

* ``blocks``: forward of the block copies (forward hooks on each :class:`~nngraph.compilers.torch.module.Block`,
  outside any compiled region);
* ``top``: the rest of the forward (embeddings, final norm, head -- the graph outside the blocks);
* ``loss``: the task's loss (``GraphSteps.loss_of``);
* ``backward``: ``loss.backward()`` (``amp.backward``);
* ``clip``: the gradient-norm clipping and ``zero_grad`` (``amp.update`` less the optimizer step);
* ``optimizer``: ``optimizer.step()`` (AdamW, foreach, as ``train.optimizer`` makes it);
* ``other``: the rest of ``train_step`` (the batch, the schedule, counters).

``gemm`` (:func:`gemm_seconds`): the CPU time of one step's matrix products (``aten::mm``, ``addmm``, ``bmm``)
replayed alone -- eager or compiled, the same products run on the same MKL kernels, so the step time less this
is the part that compilation can shorten.

The step is the trainer's own (the instrumentation wraps its functions, it does not rewrite them), so the
numbers are what ``nngraph train`` spends per step.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

PHASES = ["blocks", "top", "loss", "backward", "clip", "optimizer", "other"]


def trainer(spec: Path, sets: list[str], out: Path, inductor: dict[str, Any] | None = None) -> Any:
    """A one-process :class:`Trainer` of ``spec`` with ``train.*`` overrides ``sets`` (one torch thread);
    ``inductor``: torch.compile options that replace ``train.compile``'s own while it is built."""
    from nngraph.compilers.train import scale
    from nngraph.compilers.train.config import load_run_config
    from nngraph.compilers.train.distributed import Dist
    from nngraph.compilers.train.loop import Trainer
    from nngraph.compilers.train.plan import build_plan

    run = load_run_config(spec, ["train.threads=1", *sets], steps=100_000)
    own = scale.INDUCTOR_OPTIONS
    scale.INDUCTOR_OPTIONS = own if inductor is None else inductor
    try:
        return Trainer(run, build_plan(run, Dist()), out, Dist(), lambda _line: None)
    finally:
        scale.INDUCTOR_OPTIONS = own


class _Clock:
    """Accumulates CPU seconds per phase while wrapped functions run."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(PHASES, 0.0)

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[phase] += time.process_time() - t

        return timed


@contextmanager
def instrumented(tr: Any) -> Iterator[_Clock]:
    """Wrap ``tr``'s forward, loss, backward, update and optimizer step to time them (undone on exit)."""
    from nngraph.compilers.torch.module import blocks
    from nngraph.compilers.train import amp

    clock, gs = _Clock(), tr.task
    starts: dict[int, float] = {}
    hooks = []
    for b in blocks(gs.model):
        hooks.append(b.register_forward_pre_hook(lambda m, _a: starts.__setitem__(id(m), time.process_time())))
        hooks.append(b.register_forward_hook(lambda m, _a, _o: clock.spent.__setitem__(
            "blocks", clock.spent["blocks"] + time.process_time() - starts[id(m)])))
    saved = {"fwd": gs.forward, "loss": gs.loss_of, "bwd": amp.backward, "upd": amp.update, "opt": gs.opt.step}
    gs.forward, gs.loss_of = clock.wrap("top", saved["fwd"]), clock.wrap("loss", saved["loss"])
    amp.backward, amp.update = clock.wrap("backward", saved["bwd"]), clock.wrap("clip", saved["upd"])
    gs.opt.step = clock.wrap("optimizer", saved["opt"])
    try:
        yield clock
    finally:
        for h in hooks:
            h.remove()
        gs.forward, gs.loss_of, amp.backward, amp.update, gs.opt.step = (saved[k] for k in
                                                                         ("fwd", "loss", "bwd", "upd", "opt"))


def _step(tr: Any, clock: _Clock) -> dict[str, float]:
    """One timed ``train_step``: wall and CPU seconds and the phases (nested wrappers reported exclusive)."""
    clock.spent = dict.fromkeys(PHASES, 0.0)
    w, c = time.perf_counter(), time.process_time()
    tr.train_step()
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    s = clock.spent
    phases = {"blocks": s["blocks"], "top": s["top"] - s["blocks"], "loss": s["loss"], "backward": s["backward"],
              "clip": s["clip"] - s["optimizer"], "optimizer": s["optimizer"]}
    phases["other"] = cpu - sum(phases.values())
    return {"wall": wall, "cpu": cpu, **phases}


GEMMS = ("aten::mm", "aten::addmm", "aten::bmm")


def gemm_seconds(tr: Any, repeats: int = 5) -> float:
    """CPU seconds of one step's matrix products alone: the shapes of one profiled ``train_step``'s ``aten::mm``,
    ``addmm`` and ``bmm`` calls, replayed on fresh contiguous tensors (median of ``repeats``)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        tr.train_step()
    calls = []
    for e in prof.events():
        if e.name in GEMMS:
            shapes = [s for s in e.input_shapes if s]
            args = [torch.randn(s) for s in shapes[:3 if e.name == "aten::addmm" else 2]]
            calls.append((getattr(torch, e.name.removeprefix("aten::")), args))
    times = []
    for _ in range(repeats):
        t = time.process_time()
        for fn, args in calls:
            fn(*args)
        times.append(time.process_time() - t)
    return statistics.median(times)


def compare(spec: Path, variants: dict[str, tuple[list[str], dict[str, Any] | None]], runs: int, warmup: int = 2
            ) -> dict[str, dict[str, Any]]:
    """Median wall/CPU step time and phases per variant (name -> (``train.*`` overrides, inductor options or None
    for train.compile's own)), alternating ``runs`` rounds after ``warmup`` steps each; ``first_steps_s``: the
    wall time of the warm-up steps (compilation); ``gemm``: :func:`gemm_seconds` of the first variant (the same
    products in every variant)."""
    with tempfile.TemporaryDirectory() as tmp:
        trs = {name: trainer(spec, sets, Path(tmp) / name, opts) for name, (sets, opts) in variants.items()}
        first = {}
        for name, tr in trs.items():
            t = time.perf_counter()
            for _ in range(warmup):
                tr.train_step()
            first[name] = time.perf_counter() - t
        gemm = gemm_seconds(next(iter(trs.values())))  # the C++ wrapper's calls do not reach the profiler
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in trs}
        for _ in range(runs):
            for name, tr in trs.items():
                with instrumented(tr) as clock:
                    samples[name].append(_step(tr, clock))
    return {name: {**{k: statistics.median(s[k] for s in rows) for k in ["wall", "cpu", *PHASES]},
                   "gemm": gemm, "first_steps_s": first[name], "runs": runs} for name, rows in samples.items()}
