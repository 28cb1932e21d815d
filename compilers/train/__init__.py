"""Training a spec: ``nngraph train SPEC`` and :func:`train`.

::

    from nngraph.compilers.train import train
    summary = train("specs/cnn_digits.yaml", out="out/cnn", steps=300)
    print(summary["test"]["accuracy"])

The ``train:`` section of the spec (or a ``--config`` YAML) is checked by
:mod:`nngraph.train_schema`. A run writes to ``OUT/``: ``metrics.jsonl``,
``checkpoints/step_*.safetensors`` (resumable) and ``checkpoints/best.safetensors``,
``model.safetensors`` (final weights, LoRA merged), ``best_model.safetensors``,
``config.json``, ``summary.json``, ``tb/`` (TensorBoard) and ``loss.png``, and ``run.json`` plus
``spec.yaml`` (how the spec was built: ``nngraph export/infer/sample/generate OUT`` rebuild it,
see :mod:`nngraph.run_folder`).

SIGINT/SIGTERM stop a run after its current step with a checkpoint (:mod:`.longrun`): ``train``
raises :class:`TrainingInterrupted`, ``nngraph train`` exits 130/143; ``--resume`` continues exactly.

Modules: :mod:`.config` (merging and checking the configuration), :mod:`.data`
(datasets and deterministic batching), :mod:`.binding` (data fields -> graph
inputs), :mod:`.tasks` / :mod:`.tasks_more` (losses and metrics per task),
:mod:`.optim`, :mod:`.lora`, :mod:`.checkpoint`, :mod:`.loop`, :mod:`.logging`,
:mod:`.distributed` (DDP, launching workers), :mod:`.fsdp` (sharded data parallel), :mod:`.amp` (autocast and
the fp16 gradient scaler).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from nngraph.io import write_text_atomic
from nngraph.outputs import folder_name

from .checkpoint import CheckpointError
from .data import DataError
from .longrun import TrainingInterrupted

__all__ = ["CheckpointError", "DataError", "TrainingInterrupted", "train", "train_worker"]


def _echo(text: str) -> None:
    print(text, flush=True)


def train(spec: str | Path, out: str | Path | None = None, overrides: list[str] | None = None,
          config: str | Path | None = None, steps: int | None = None, epochs: int | None = None,
          seed: int | None = None, data: str | None = None, resume: bool = False, nproc_per_node: int = 1,
          echo: Callable[[str], None] = _echo, quiet: bool = False, strategy: str | None = None,
          overwrite: bool = False) -> dict[str, Any]:
    """Train ``spec``; returns the run summary (also written to ``OUT/summary.json``).

    With ``nproc_per_node`` > 1 (and not already inside a torchrun worker), N
    workers are launched with torch's elastic launcher and rank 0's summary is
    returned. ``strategy`` (ddp or fsdp) sets ``train.distributed.strategy``. ``out`` must be new, empty or a
    run of this spec unless ``resume`` or ``overwrite`` (:mod:`.outfolder`).
    """
    from .config import load_run_config
    from .outfolder import prepare

    if strategy is not None:
        overrides = [*(overrides or []), f"train.distributed.strategy={strategy}"]
    run = load_run_config(spec, overrides, config, steps, epochs, seed, data)  # fail fast, before any launch
    out_dir = Path(out) if out is not None else Path("out") / "train" / folder_name(run.graph.name)
    resume = prepare(out_dir, run, resume, overwrite, (lambda _t: None) if quiet else echo)
    if run.graph.networks:  # several networks (gan, wgan, vae, dqn, ddpg): one process, compilers/train/multi.py
        from .multi import train_networks

        if nproc_per_node > 1:
            raise run.error("task", "training several networks runs on one process: leave out --nproc-per-node")
        return train_networks(run, out_dir, resume, echo, quiet)
    args = (str(spec), str(out_dir), list(overrides or []), None if config is None else str(config), steps, epochs,
            seed, data, resume, quiet)
    if nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:
        from .distributed import launch
        from .plan import task_and_data

        task_and_data(run)  # a bad data file is reported once, here, not by every worker
        results = launch(nproc_per_node, train_worker, *args)
        summary = results.get(0) or {}
        if not quiet:
            for line in summary.get("lines", []):
                echo(line)
        return summary
    return _train(run, out_dir, resume, echo, quiet)


def train_worker(spec: str, out: str, overrides: list[str], config: str | None, steps: int | None,
                 epochs: int | None, seed: int | None, data: str | None, resume: bool, quiet: bool) -> dict[str, Any]:
    """One process of a multi-process run (the elastic launcher's entry point; must be importable)."""
    from .config import load_run_config

    run = load_run_config(spec, overrides, config, steps, epochs, seed, data)
    lines: list[str] = []
    summary = _train(run, Path(out), resume, lines.append, quiet)
    summary["lines"] = lines
    return summary


def _train(run: Any, out: Path, resume: bool, echo: Callable[[str], None], quiet: bool) -> dict[str, Any]:
    from . import checkpoint as ck
    from . import distributed
    from .logging import MetricsLog, Progress, TensorBoard, plot_losses, read_metrics
    from nngraph.run_folder import record_run

    from .longrun import INTERRUPTED, Watch
    from .loop import Trainer, run_loop
    from .plan import build_plan, describe

    d = distributed.from_env()
    say = echo if (d.main and not quiet) else (lambda _t: None)
    plan = build_plan(run, d)
    distributed.init(d, plan.device)
    try:
        tr = Trainer(run, plan, out, d, echo)
        resumed_from = ck.resume_latest(tr, out / "checkpoints", say) if resume else None
        say(f"training {run.graph.name}: {describe(plan, run, d)}")
        log = tb = None
        if d.main:
            out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / "config.json", json.dumps(run.values, indent=2) + "\n")
            record_run(out, run.spec_path, run.overrides, run.graph)  # export/infer/sample/generate take OUT/
            log = MetricsLog(out / "metrics.jsonl", resumed_from)
            tb = TensorBoard(out / "tb", run.values["log"]["tensorboard"])
            _save_tokenizer(plan, out)
        progress = Progress(plan.total_steps, tr.step, run.values["log"]["progress"] if d.main and not quiet else False,
                            plan.task.unit, None if d.active else echo)  # a worker's echo is shown only at the end
        try:
            with Watch(run.values["checkpoint"]["every_minutes"], d, plan.device) as watch:
                result = run_loop(tr, log, tb, progress, watch=watch)
        finally:
            progress.close()
        if result["stopped"] == INTERRUPTED:
            _close(log, tb)
            raise TrainingInterrupted(tr.step, watch.stopped_by)
        summary = _finish(tr, result, out, log, tb, say)
        if d.main and log is not None:
            _close(log, tb)
            if plot_losses(read_metrics(out / "metrics.jsonl"), out / "loss.png", f"{run.graph.name}: loss",
                           run.values["log"]["plot"]):
                summary["plot"] = str(out / "loss.png")
            write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        distributed.barrier(d)
        return summary
    finally:
        distributed.shutdown(d)


def _close(log: Any, tb: Any) -> None:
    """Close rank 0's metrics log and TensorBoard writer (other ranks have neither)."""
    for writer in (log, tb):
        if writer is not None:
            writer.close()


def _save_tokenizer(plan: Any, out: Path) -> None:
    tok = getattr(plan.task.data, "tokenizer", None)
    if tok is not None:
        write_text_atomic(out / "tokenizer.json", tok.to_json())


def _export(tr: Any, path: Path) -> None:
    """Save the model's weights (spec keys; LoRA adapters merged) with the spec fingerprint.

    Every rank calls it (under FSDP the weights are gathered); rank 0 writes.
    """
    from nngraph.compilers.torch import build_module, load_state_dict
    from nngraph.compilers.torch.weights import save_weights

    from .lora import apply_lora, merged_state_dict

    state = tr.model_state()
    if not tr.d.main:
        return
    model, merge = tr.model, bool(tr.plan.lora and tr.cfg["lora"]["merge"])
    if merge:
        state = merged_state_dict(model, state)
    if merge or tr.sharded:  # a plain module holding the full weights
        model = build_module(tr.plan.graph, seed=0)
        if tr.plan.lora and not merge:
            lc = tr.cfg["lora"]
            apply_lora(model, lc["targets"], lc["rank"], lc["alpha"], lc["dropout"])
        load_state_dict(model, state)
    save_weights(model, tr.plan.graph, path)


def _finish(tr: Any, result: dict[str, Any], out: Path, log: Any, tb: Any, say: Callable[[str], None]) -> dict[str, Any]:
    """Save the final weights; reload the best ones (if an evaluation chose them) for the test split; summarize."""
    from . import checkpoint as ck
    from .distributed import barrier
    from .fsdp import load_model_state

    plan, d = tr.plan, tr.d
    summary: dict[str, Any] = {"spec": tr.run.graph.name, "task": plan.task.name, "steps": tr.step,
                               "stopped": result["stopped"], "val": result["val"], "metric": tr.metric,
                               "best": tr.best, "best_step": tr.best_step, "out": str(out)}
    _export(tr, out / "model.safetensors")
    best_path = out / "checkpoints" / "best.safetensors"
    barrier(d)
    use_best = tr.best_step is not None and tr.best_step != tr.step and best_path.is_file()
    if use_best:
        load_model_state(tr.model, ck.read(best_path).group("model"), tr.sharded)
    if tr.best_step is not None:
        _export(tr, out / "best_model.safetensors")
    test = tr.evaluate("test")
    weights = f"best (step {tr.best_step})" if use_best else f"final (step {tr.step})"
    if test is not None:
        summary["test"] = test
        summary["test_weights"] = weights
        if log is not None:
            log.write({"step": tr.step, "split": "test", **test})
        if tb is not None:
            tb.scalars("test", tr.step, test)
    lines = [f"stopped after {tr.step} steps ({result['stopped']})"]
    if result["val"]:
        lines.append("val: " + _fmt(result["val"]))
    if test is not None:
        lines.append(f"test ({weights} weights): " + _fmt(test))
    lines.append(f"wrote {out}/model.safetensors, metrics.jsonl, checkpoints/")
    for line in lines:
        say(line)
    return summary


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
