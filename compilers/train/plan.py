"""Building a run: device, data, task, model (with auxiliary-loss outputs and LoRA), step counts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nngraph.ir import Graph, Ref
from nngraph.train_schema import match_aux

from .amp import unsupported
from .config import RunConfig
from .data import load_data
from .distributed import Dist
from .scale import apply_checkpointing, compile_blocks
from ..state.lora import apply_lora, linear_names
from .tasks import make_task
from .tasks._base import GraphTask
from .tasks._guess import guess_task


@dataclass
class Plan:
    """Everything derived from the configuration before the first step."""

    task: GraphTask
    model: torch.nn.Module
    graph: Graph  # the graph compiled (with auxiliary outputs added)
    device: torch.device
    aux: dict[str, float]  # model output name -> weight
    state_map: dict[str, str]  # graph input -> graph output carried between TBPTT windows
    global_batch: int
    total_steps: int
    steps_per_epoch: int
    lora: list[str]


def resolve_device(setting: str, d: Dist) -> torch.device:
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device: cuda, but CUDA is not available here")
        return torch.device("cuda", d.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def data_base_dir(run: RunConfig) -> Path:
    """Relative data paths resolve against the file that wrote them (spec or --config file), else the cwd."""
    origin = Path(run.train.pos("data.path").file)
    return origin.parent if origin.is_file() else Path.cwd()


def _aux_outputs(run: RunConfig) -> tuple[Graph, dict[str, float]]:
    graph, weights, extra = run.graph, {}, {}
    for pattern, w in run.values["loss"]["aux"].items():
        for name in match_aux(pattern, graph):
            weights[name] = weights.get(name, 0.0) + w
            if name not in graph.outputs:
                node, _, out = name.rpartition(".")
                extra[name] = Ref(node, out)
    if extra:
        graph = dataclasses.replace(graph, outputs={**graph.outputs, **extra})
    return graph, weights


def _state_map(run: RunConfig) -> dict[str, str]:
    if run.values["state"] is not None:
        return dict(run.values["state"])
    if not run.values["tbptt"]:
        return {}
    g = run.graph
    return {name: name[:-1] for name, gi in g.inputs.items()
            if gi.optional and name.endswith("0") and name[:-1] in g.outputs}


def task_and_data(run: RunConfig) -> tuple[str, Any]:
    """The task's name and its loaded dataset (raises :class:`DataError` for a bad file)."""
    cfg = run.values
    task_name = cfg["task"] if cfg["task"] != "auto" else guess_task(run)
    if run.dataset is not None:  # the user's own Dataset, named on the command line (--dataset MODULE:FUNCTION)
        from .data import augmented
        from .data.hook import load_hook

        ds = load_hook(run.dataset, cfg["data"])
        return task_name, augmented(ds, cfg["data"], run.dataset) if cfg["data"]["augment"] else ds
    return task_name, load_data(cfg["data"], task_name, data_base_dir(run))


def build_plan(run: RunConfig, d: Dist) -> Plan:
    from nngraph.compilers.torch import build_module

    cfg = run.values
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    device = resolve_device(cfg["device"], d)
    why = unsupported(cfg["precision"], device)
    if why:
        raise run.error("precision", why, "use precision fp16 (with its gradient scaler) or fp32 on this device")
    task_name, data = task_and_data(run)
    task = make_task(run, task_name, data)
    graph, aux = _aux_outputs(run)
    torch.manual_seed(cfg["seed"])
    model = build_module(graph, seed=cfg["seed"]).to(device)
    apply_checkpointing(run, model)
    if cfg["compile"]:
        compile_blocks(model, backend=cfg["compile_backend"], cpp_wrapper=cfg["distributed"]["tp"] == 1)
    lora: list[str] = []
    if cfg["lora"] is not None:
        lc = cfg["lora"]
        lora = apply_lora(model, lc["targets"], lc["rank"], lc["alpha"], lc["dropout"])
        if not lora:
            raise run.error("lora.targets", f"train.lora.targets {lc['targets']} match no linear layer",
                            f"linear layers: {', '.join(linear_names(model)[:12]) or 'none'}")
    gb = cfg["batch_size"] * d.dp_world
    spe = task.steps_per_epoch(gb * cfg["grad_accum"])
    total = cfg["steps"] if cfg["steps"] is not None else spe * (cfg["epochs"] or 1)
    return Plan(task, model, graph, device, aux, _state_map(run), gb, total, spe, lora)


def _strategy(cfg: dict[str, Any], d: Dist) -> str:
    """`` (FSDP)``, `` (tp 2 × dp 2)`` or nothing (DDP, one process)."""
    if d.tp > 1:
        return f" (tp {d.tp} × dp {d.dp_world}" + (", FSDP" if d.dp_world > 1 else "") + ")"
    return " (FSDP)" if d.active and cfg["distributed"]["strategy"] == "fsdp" else ""


def describe(plan: Plan, run: RunConfig, d: Dist) -> str:
    cfg = run.values
    n_train = sum(p.numel() for p in plan.model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in plan.model.parameters())
    data = plan.task.data
    parts = [f"task {plan.task.name} on {data.meta.get('name', data.kind)}",
             f"{n_train:,} trainable of {n_all:,} parameters" + (f" (LoRA on {len(plan.lora)} layers)" if plan.lora else ""),
             f"{plan.total_steps} steps of {plan.global_batch} x {cfg['grad_accum']}"
             + (f" on {d.world} processes" if d.active else "")
             + _strategy(cfg, d) + f", {cfg['optimizer']['type']} lr {cfg['optimizer']['lr']:g}",
             f"device {plan.device}" + (f", {cfg['precision']}" if cfg["precision"] != "fp32" else "")]
    return "; ".join(parts)
