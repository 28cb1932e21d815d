"""What a checkpoint holds and what resume restores: one ordered list, :data:`PARTS`, for every task.

A checkpoint (:mod:`.checkpoint`: one safetensors file, atomic, verified) holds tensors and one JSON state. Each
part names its state field (tensors under the same prefix) and how it is saved and restored; :func:`restore`
walks the list in order, each load inside :func:`.ckstate.loading` so a broken field is a CheckpointError naming
it. The layout is the one checkpoints had before the two trainers became one, so those still load:

====================  ==================================================  ================================
part                  tensors / state                                     held by
====================  ==================================================  ================================
``world``             state: the number of processes                      every run
``lora``              state: the layers wrapped with adapters             one-graph runs
``run``               state: step, best, best_step, bad_evals, metric,    every run
                      skipped (counters)
``model``             ``model/<spec key>``                                every run
``optimizer``         ``optim/<param>/<name>``; state: param groups       one-graph runs (one optimizer)
``optimizers``        ``optim/<optimizer>/<param>/<name>``; state per     networks runs (one per role, or
                      optimizer                                           one for all)
``scheduler``         state: the schedule's record (a function of the     one-graph runs
                      step: checked, nothing to restore)
``scaler``            state: the fp16 gradient scaler (or null)           one-graph runs
``task``              ``task/...``; state: the task's own (target         networks runs
                      networks, replay buffer, environment, latent scale)
``rng``               ``rank/<r>/rng/...``; state: Python/numpy RNGs      every run
``carry``             ``rank/<r>/carry/...`` (truncated-BPTT state)       one-graph runs
====================  ==================================================  ================================

Besides, the state records ``spec``, ``fingerprint`` and ``config``: resume refuses another architecture or a
configuration changed beyond :data:`RESUMABLE_CHANGES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..state import checkpoint as ck
from ..state import ckstate

#: configuration keys that may differ when resuming (how long and how often, not what is computed;
#: checkpoints hold the full state, whether the run was sharded or not: ddp <-> fsdp may change)
RESUMABLE_CHANGES = ("steps", "epochs", "log", "checkpoint", "eval", "early_stopping", "device", "distributed",
                     "threads")

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Part:
    """One thing a checkpoint holds: ``save(tr, gathered, tensors, state)`` adds it, ``restore(tr, ckpt)`` loads it."""

    name: str
    save: Callable[[Any, dict[str, Any], Tensors, dict[str, Any]], None]
    restore: Callable[[Any, ck.Checkpoint], None]
    graph: bool = True  # held by one-graph runs
    networks: bool = True  # held by networks runs

    def held_by(self, tr: Any) -> bool:
        return self.networks if tr.networks else self.graph


# ----- run counters, world, lora -------------------------------------------------------------------
def _save_run(tr: Any, g: dict[str, Any], tensors: Tensors, state: dict[str, Any]) -> None:
    state["run"] = {"step": tr.step, "best": tr.best, "best_step": tr.best_step, "bad_evals": tr.bad_evals,
                    "metric": tr.metric, "skipped": getattr(tr.task, "skipped", 0)}


def _restore_run(tr: Any, ckpt: ck.Checkpoint) -> None:
    # networks checkpoints written before the trainers merged record step, best and best_step only
    optional = ("bad_evals", "skipped") if tr.networks else ("skipped",)
    tr.counters = ckstate.run_counters(ckpt, ("bad_evals", "skipped"), optional)


def _save_world(tr: Any, g: dict[str, Any], tensors: Tensors, state: dict[str, Any]) -> None:
    state["world"] = tr.d.world


def _restore_world(tr: Any, ckpt: ck.Checkpoint) -> None:
    if ckpt.state.get("world", 1) != tr.d.world:
        raise ck.CheckpointError(f"'{ckpt.path}' was written by {ckpt.state.get('world')} processes, this run has "
                                 f"{tr.d.world}: resume with the same --nproc-per-node")


def _save_lora(tr: Any, g: dict[str, Any], tensors: Tensors, state: dict[str, Any]) -> None:
    state["lora"] = tr.plan.lora


def _restore_lora(tr: Any, ckpt: ck.Checkpoint) -> None:
    have, want = ckstate.lora_layers(ckpt), list(tr.plan.lora or [])
    if have != want:
        raise ckstate.bad_field(ckpt, "lora", f"names the layers {have}; this run adapts {want}")


# ----- weights and optimizers ------------------------------------------------------------------------
def _save_model(tr: Any, g: dict[str, Any], tensors: Tensors, state: dict[str, Any]) -> None:
    tensors.update({f"model/{k}": v for k, v in g["model"].items()})


def _restore_model(tr: Any, ckpt: ck.Checkpoint) -> None:
    with ckstate.loading(ckpt, "model"):
        tr.task.load_model(ckpt.group("model"), ckpt.path)


def _save_optimizer(tr: Any, g: dict[str, Any], tensors: Tensors, state: dict[str, Any]) -> None:
    opt_t, state["optimizer"] = ck.flatten_optimizer(g["optimizers"]["model"])
    tensors.update(opt_t)


def _restore_optimizer(tr: Any, ckpt: ck.Checkpoint) -> None:
    with ckstate.loading(ckpt, "optimizer"):
        sd = ck.unflatten_optimizer(ckpt, ckstate.field(ckpt, "optimizer"))
        ckstate.optimizer_state(ckpt, tr.task.opt, sd, "optimizer", tr.counters["step"] - tr.counters["skipped"])
        tr.task.load_optimizer(sd)


def _save_optimizers(tr: Any, g: dict[str, Any], tensors: Tensors, state: dict[str, Any]) -> None:
    state["optimizers"] = {}
    for name, sd in g["optimizers"].items():
        t, state["optimizers"][name] = ck.flatten_optimizer(sd)
        tensors.update({f"optim/{name}/{k[len('optim/'):]}": v for k, v in t.items()})


def _restore_optimizers(tr: Any, ckpt: ck.Checkpoint) -> None:
    for name, opt in tr.task.optimizers.items():
        with ckstate.loading(ckpt, f"optimizers.{name}"):
            shim = ck.Checkpoint({f"optim/{k}": v for k, v in ckpt.group(f"optim/{name}").items()}, {}, ckpt.path)
            sd = ck.unflatten_optimizer(shim, ckstate.field(ckpt, "optimizers")[name])
            ckstate.optimizer_state(ckpt, opt, sd, f"optimizers.{name}", 0)  # a role may not have stepped yet
            opt.load_state_dict(sd)


# ----- schedule, scaler, task state --------------------------------------------------------------------
def _save_scheduler(tr: Any, g: dict[str, Any], tensors: Tensors, state: dict[str, Any]) -> None:
    state["scheduler"] = tr.schedule.record(tr.step)


def _restore_scheduler(tr: Any, ckpt: ck.Checkpoint) -> None:
    with ckstate.loading(ckpt, "scheduler"):
        ckstate.like(ckpt, "scheduler", ckpt.state.get("scheduler"), tr.schedule.record(0))


def _save_scaler(tr: Any, g: dict[str, Any], tensors: Tensors, state: dict[str, Any]) -> None:
    state["scaler"] = tr.task.scaler.state_dict() if tr.task.scaler else None


def _restore_scaler(tr: Any, ckpt: ck.Checkpoint) -> None:
    scaler, saved = tr.task.scaler, ckpt.state.get("scaler")
    if scaler and saved:
        with ckstate.loading(ckpt, "scaler"):
            scaler.load_state_dict(ckstate.like(ckpt, "scaler", saved, scaler.state_dict()))


def _save_task(tr: Any, g: dict[str, Any], tensors: Tensors, state: dict[str, Any]) -> None:
    task_t, state["task"] = tr.task.state()
    tensors.update({f"task/{k}": v for k, v in task_t.items()})


def _restore_task(tr: Any, ckpt: ck.Checkpoint) -> None:
    with ckstate.loading(ckpt, "task"):
        tr.task.load_state(ckpt.group("task"), ckstate.field(ckpt, "task"))


# ----- per-process state: RNGs and carried recurrent state -----------------------------------------------
def _save_rng(tr: Any, g: dict[str, Any], tensors: Tensors, state: dict[str, Any]) -> None:
    _, state["rng"] = ck.rng_state()
    for r, part in g["ranks"].items():
        tensors.update({f"rank/{r}/{k}": v for k, v in part.items()})


def _restore_rng(tr: Any, ckpt: ck.Checkpoint) -> None:
    with ckstate.loading(ckpt, "rng"):
        ck.set_rng_state(ckpt, ckstate.field(ckpt, "rng"), tr.d.rank, tr.device)


def _saved_with_rng(tr: Any, g: dict[str, Any], tensors: Tensors, state: dict[str, Any]) -> None:
    """The carried state travels in ``rank/<r>/carry/...`` with each rank's RNG (:func:`rank_states`)."""


def _restore_carry(tr: Any, ckpt: ck.Checkpoint) -> None:
    tr.task.carry = {k: v.to(tr.device) for k, v in ckpt.group(f"rank/{tr.d.rank}/carry").items()}


#: what a checkpoint holds, in the order resume restores it
PARTS = (
    Part("world", _save_world, _restore_world),
    Part("lora", _save_lora, _restore_lora, networks=False),
    Part("run", _save_run, _restore_run),
    Part("model", _save_model, _restore_model),
    Part("optimizer", _save_optimizer, _restore_optimizer, networks=False),
    Part("optimizers", _save_optimizers, _restore_optimizers, graph=False),
    Part("scheduler", _save_scheduler, _restore_scheduler, networks=False),
    Part("scaler", _save_scaler, _restore_scaler, networks=False),
    Part("task", _save_task, _restore_task, graph=False),
    Part("rng", _save_rng, _restore_rng),
    Part("carry", _saved_with_rng, _restore_carry, networks=False),
)


def rank_states(tr: Any) -> dict[str, Tensors]:
    """Every process's torch RNG states and carried state (gathered to all ranks; rank -> tensors)."""
    rng_t, _ = ck.rng_state(tr.device)
    carry = getattr(tr.task, "carry", {})
    local = {**{k: v.cpu() for k, v in rng_t.items()}, **{f"carry/{k}": v.cpu() for k, v in carry.items()}}
    if not tr.d.active:
        return {"0": local}
    import torch.distributed as dist

    parts: list[Any] = [None] * tr.d.world
    dist.all_gather_object(parts, local)
    return {str(r): p for r, p in enumerate(parts)}


def gather(tr: Any) -> dict[str, Any]:
    """What every rank must compute together before rank 0 writes (RNG/carry gather, FSDP weight gathers)."""
    return {"ranks": rank_states(tr), "model": tr.task.model_state(), "optimizers": tr.task.optimizer_states()}


def payload(tr: Any, gathered: dict[str, Any]) -> tuple[Tensors, dict[str, Any]]:
    """The checkpoint's tensors and state: the run's identity plus every part :data:`PARTS` holds for ``tr``."""
    tensors: Tensors = {}
    state: dict[str, Any] = {"spec": tr.run.graph.name, "fingerprint": tr.run.graph.fingerprint(), "config": tr.cfg}
    for part in PARTS:
        if part.held_by(tr):
            part.save(tr, gathered, tensors, state)
    return tensors, state


def restore(tr: Any, ckpt: ck.Checkpoint) -> None:
    """Restore ``tr`` from ``ckpt``, part by part; a field that does not fit this run is a CheckpointError naming it."""
    ckstate.check_resumable(ckpt, tr.run.graph, tr.cfg, RESUMABLE_CHANGES)
    for part in PARTS:
        if part.held_by(tr):
            part.restore(tr, ckpt)
    c = tr.counters
    tr.step, tr.best, tr.best_step, tr.bad_evals = c["step"], c["best"], c["best_step"], c["bad_evals"]
    if hasattr(tr.task, "skipped"):
        tr.task.skipped = c["skipped"]
