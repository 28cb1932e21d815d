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
inputs), :mod:`.tasks` (the task registry: one module per task family, ``@task(name)``, ``@task(name, networks=True)``),
:mod:`.session` (one run: output files, loop, end-of-run weights), :mod:`.loop` (the one :class:`~.loop.Trainer`
and loop for every task), :mod:`.graph_steps` (a one-graph task's step), :mod:`.resume` (what a checkpoint holds
and what resume restores), :mod:`.checkpoint` / :mod:`.ckstate` (the file; checking its state), :mod:`.optim`
(optimizers and the one lr schedule), :mod:`.lora`, :mod:`.logging`, :mod:`.distributed` (DDP, launching workers),
:mod:`.fsdp` (sharded data parallel), :mod:`.tensor_parallel` (the plan from the graph, a dp × tp mesh),
:mod:`.amp` (autocast and the fp16 gradient scaler).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from nngraph.outputs import folder_name

from ..state.checkpoint import CheckpointError
from .data import DataError
from .stop import TrainingInterrupted

__all__ = ["CheckpointError", "DataError", "TrainingInterrupted", "train", "train_worker"]


def _echo(text: str) -> None:
    print(text, flush=True)


def train(spec: str | Path, out: str | Path | None = None, overrides: list[str] | None = None,
          config: str | Path | None = None, steps: int | None = None, epochs: int | None = None,
          seed: int | None = None, data: str | None = None, resume: bool = False, nproc_per_node: int = 1,
          echo: Callable[[str], None] = _echo, quiet: bool = False, strategy: str | None = None,
          overwrite: bool = False, trackers: list[Any] | None = None, dataset: str | None = None) -> dict[str, Any]:
    """Train ``spec``; returns the run summary (also written to ``OUT/summary.json``).

    ``dataset``: ``MODULE:FUNCTION`` returning the user's own ``torch.utils.data.Dataset`` (:mod:`.data.hook`;
    one process). ``trackers``: more experiment trackers for this one-process run (objects with ``scalars(split, step, values)``
    and ``close()``, see :mod:`.trackers`), e.g. ``nngraph tune``'s reporter of val metrics to its pruner.

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
    run.dataset = dataset
    out_dir = Path(out) if out is not None else Path("out") / "train" / folder_name(run.graph.name)
    resume = prepare(out_dir, run, resume, overwrite, (lambda _t: None) if quiet else echo)
    if dataset is not None and nproc_per_node > 1:
        raise DataError(f"--dataset '{dataset}' trains on one process: leave out --nproc-per-node")
    if run.graph.networks and nproc_per_node > 1:  # several networks (gan, wgan, vae, dqn, ddpg, latent_diffusion)
        raise run.error("task", "training several networks runs on one process: leave out --nproc-per-node")
    args = (str(spec), str(out_dir), list(overrides or []), None if config is None else str(config), steps, epochs,
            seed, data, resume, quiet)
    if nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:  # one graph on N processes
        from .distributed import launch
        from .plan import task_and_data

        task_and_data(run)  # a bad data file is reported once, here, not by every worker
        results = launch(nproc_per_node, train_worker, *args)
        summary = results.get(0) or {}
        if not quiet:
            for line in summary.get("lines", []):
                echo(line)
        return summary
    from .session import train_run

    return train_run(run, out_dir, resume, echo, quiet, trackers=trackers)


def train_worker(spec: str, out: str, overrides: list[str], config: str | None, steps: int | None,
                 epochs: int | None, seed: int | None, data: str | None, resume: bool, quiet: bool) -> dict[str, Any]:
    """One process of a multi-process run (the elastic launcher's entry point; must be importable)."""
    from .config import load_run_config
    from .session import train_run

    run = load_run_config(spec, overrides, config, steps, epochs, seed, data)
    lines: list[str] = []
    summary = train_run(run, Path(out), resume, lines.append, quiet)
    summary["lines"] = lines
    return summary
