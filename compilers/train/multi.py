"""Training a spec with several networks (``networks:``): the shared loop of the tasks that train them
against or alongside each other -- ``gan``/``wgan`` (:mod:`.adversarial`), ``dqn``/``ddpg`` (:mod:`.rl`) and
``vae`` on an encoder/decoder pair (:mod:`.adversarial`) and ``latent_diffusion`` (:mod:`.latent_diffusion`).

A task owns its optimizers (one per role, or one for all), any extra state (target networks, a replay
buffer, the environment) and draws its randomness either from generators seeded by (seed, step) or
from generators whose state it checkpoints. The loop here logs, evaluates and checkpoints:

* checkpoints (:mod:`.checkpoint`: one safetensors file, atomic, verified) hold every network
  (``model/<network>.<node>...``), every optimizer (``optim/<name>/...``), the task's tensors
  (``task/...``: target networks, replay buffer) and, as JSON, the step, the task's state and the
  RNG states, so ``--resume`` continues exactly;
* at the end ``OUT/model.safetensors`` holds all networks (the union graph's keys) and
  ``OUT/<network>.safetensors`` each one, with that network's fingerprint, for
  ``nngraph export SPEC --network NAME --weights OUT/NAME.safetensors``.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from nngraph.run_folder import record_run
from nngraph.io import write_text_atomic
from nngraph.spec.networks import roles_of

from . import checkpoint as ck
from . import ckstate
from .config import RunConfig
from .longrun import TrainingInterrupted, Watch
from .optim import make_optimizer

#: configuration keys that may differ when resuming (how long and how often, not what is computed)
RESUMABLE = ("steps", "epochs", "log", "checkpoint", "eval", "early_stopping", "device", "threads")


class NetTask:
    """One task over a spec's networks; subclasses set ``name`` and ``roles`` and implement the step."""

    name = ""
    metric = "loss"
    higher_is_better = False

    def __init__(self, tr: "NetTrainer"):
        self.tr, self.run, self.cfg = tr, tr.run, tr.cfg
        self.seed = self.cfg["seed"]
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def net(self, role: str) -> nn.Module:
        return self.tr.nets[self.tr.roles[role]]

    def graph(self, role: str) -> Any:
        return self.run.graph.networks[self.tr.roles[role]]

    def optimizer(self, modules: list[nn.Module], lr: float | None = None) -> torch.optim.Optimizer:
        """``train.optimizer`` over ``modules`` (at learning rate ``lr`` when given)."""
        cfg = dict(self.cfg["optimizer"])
        if lr is not None:
            cfg["lr"] = lr
        return make_optimizer(modules[0] if len(modules) == 1 else nn.ModuleList(modules), cfg)

    def total_steps(self) -> int:
        return self.cfg["steps"] or 1000

    def schedule_lr(self, step: int) -> None:
        """``train.schedule`` on every optimizer: lr = its own peak lr (the lr it was made with) times the
        schedule's multiplier at ``step`` -- a function of the step only, so a resumed run gets the same."""
        from .optim import lr_lambda

        for opt in self.optimizers.values():
            for group in opt.param_groups:
                peak = group.setdefault("peak_lr", group["lr"])
                group["lr"] = peak * lr_lambda(self.cfg["schedule"], peak, self.total_steps())(step)

    def train_step(self, step: int) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        return {}

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Extra tensors and JSON state to checkpoint (target networks, replay buffer, environment)."""
        return {}, {}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        pass


def input_shape(graph: Any, name: str | None = None) -> tuple[int, ...]:
    """The per-example shape of a network input (all dims after the batch dim must be integers)."""
    gi = graph.inputs[name] if name else next(iter(graph.inputs.values()))
    dims = gi.type.shape[1:]
    if not all(isinstance(d, int) for d in dims):
        raise ValueError(f"input '{gi.name}' of network '{graph.name}' needs fixed sizes after the batch dim, "
                         f"got {list(gi.type.shape)}")
    return tuple(dims)


def output(module: nn.Module, graph: Any, name: str | None = None, **inputs: torch.Tensor) -> torch.Tensor:
    """Run one network and return its output ``name`` (default: the first)."""
    out = module(**inputs)
    if isinstance(out, dict):
        return out[name or next(iter(graph.outputs))]
    return out


class NetTrainer:
    """Networks, the task, the step counter; checkpoints and resume."""

    def __init__(self, run: RunConfig, out: Path, task_name: str):
        from nngraph.compilers.torch.networks import build_networks

        from .adversarial import TASKS as ADV
        from .latent_diffusion import TASKS as LD
        from .rl import TASKS as RL

        self.run, self.out, self.cfg = run, out, run.values
        if self.cfg["threads"]:
            torch.set_num_threads(self.cfg["threads"])
        torch.manual_seed(self.cfg["seed"])
        self.nets = build_networks(run.graph, seed=self.cfg["seed"])
        self.roles = roles_of(task_name, self.cfg)
        self.task: NetTask = {**ADV, **RL, **LD}[task_name](self)
        self.step = 0
        self.best: float | None = None
        self.best_step: int | None = None
        self.ckpt_dir = out / "checkpoints"

    # ----- checkpoints ---------------------------------------------------------------
    def payload(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from nngraph.compilers.torch import state_dict_for

        tensors = {f"model/{k}": v for k, v in state_dict_for(self.nets).items()}
        optim_meta = {}
        for name, opt in self.task.optimizers.items():
            t, meta = ck.flatten_optimizer(opt.state_dict())
            tensors.update({f"optim/{name}/{k[len('optim/'):]}": v for k, v in t.items()})
            optim_meta[name] = meta
        task_t, task_state = self.task.state()
        tensors.update({f"task/{k}": v for k, v in task_t.items()})
        rng_t, rng_meta = ck.rng_state()
        tensors.update({f"rank/0/{k}": v for k, v in rng_t.items()})
        state = {"spec": self.run.graph.name, "fingerprint": self.run.graph.fingerprint(), "config": self.cfg,
                 "run": {"step": self.step, "best": self.best, "best_step": self.best_step},
                 "optimizers": optim_meta, "task": task_state, "rng": rng_meta, "world": 1}
        return tensors, state

    def save_checkpoint(self, name: str | None = None) -> Path:
        tensors, state = self.payload()
        return ck.save_step(self.ckpt_dir, name, self.step, tensors, state, self.cfg["checkpoint"]["keep"])

    def resume(self, ckpt: ck.Checkpoint) -> None:
        from nngraph.compilers.torch import load_state_dict

        ck.check_resumable(ckpt, self.run.graph, self.cfg, RESUMABLE)
        r = ckstate.run_counters(ckpt, keys=())
        with ckstate.loading(ckpt, "model"):
            report = load_state_dict(self.nets, ckpt.group("model"))
        if not report.ok:
            raise ck.CheckpointError(f"'{ckpt.path}': {report.describe()}")
        for name, opt in self.task.optimizers.items():
            with ckstate.loading(ckpt, f"optimizers.{name}"):
                shim = ck.Checkpoint({f"optim/{k}": v for k, v in ckpt.group(f"optim/{name}").items()}, {}, ckpt.path)
                sd = ck.unflatten_optimizer(shim, ckstate.field(ckpt, "optimizers")[name])
                ckstate.optimizer_state(ckpt, opt, sd, f"optimizers.{name}", 0)  # a role may not have stepped yet
                opt.load_state_dict(sd)
        with ckstate.loading(ckpt, "task"):
            self.task.load_state(ckpt.group("task"), ckstate.field(ckpt, "task"))
        with ckstate.loading(ckpt, "rng"):
            ck.set_rng_state(ckpt, ckstate.field(ckpt, "rng"), 0)
        self.step, self.best, self.best_step = r["step"], r["best"], r["best_step"]

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.task.higher_is_better else value < self.best

    def save_weights(self, out: Path) -> list[Path]:
        """``model.safetensors`` (every network) and ``<network>.safetensors`` (each one)."""
        from nngraph.compilers.torch.weights import save_weights

        paths = [out / "model.safetensors"]
        save_weights(self.nets, self.run.graph, paths[0])
        for net, g in self.run.graph.networks.items():
            paths.append(out / f"{net}.safetensors")
            save_weights(self.nets[net], g, paths[-1])
        return paths


def train_networks(run: RunConfig, out: Path, resume: bool, echo: Callable[[str], None], quiet: bool,
                   until: int | None = None) -> dict[str, Any]:
    """Train the networks of ``run``'s spec with its task; returns the summary (also ``OUT/summary.json``).

    ``until`` stops after that step without the end-of-run work (tests of resume use it)."""
    from .logging import MetricsLog, Progress, plot_losses, read_metrics

    say = (lambda _t: None) if quiet else echo
    task_name = run.values["task"]
    tr = NetTrainer(run, out, task_name)
    resumed_from = ck.resume_latest(tr, tr.ckpt_dir, say) if resume else None
    total = tr.task.total_steps()
    sizes = ", ".join(f"{role} = {net} ({sum(p.numel() for p in tr.nets[net].parameters()):,} parameters)"
                      for role, net in tr.roles.items())
    say(f"training {run.graph.name}: task {task_name}; {sizes}; {total} steps")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.json", json.dumps(run.values, indent=2) + "\n")
    record_run(out, run.spec_path, run.overrides, run.graph)
    log = MetricsLog(out / "metrics.jsonl", resumed_from)
    cfg = run.values
    log_every = cfg["log"]["every"]
    eval_every = cfg["eval"]["every"] or max(total // 10, 1)
    ckpt_every = cfg["checkpoint"]["every"] or eval_every
    progress = Progress(total, tr.step, cfg["log"]["progress"] if not quiet else False, "steps", say)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    n, t0 = 0, time.perf_counter()
    last_eval: dict[str, float] = {}
    watch = Watch(cfg["checkpoint"]["every_minutes"])
    with watch, closing(progress), closing(log):  # closed however the loop ends (a signal raises)
        while tr.step < min(total, until or total):
            tr.task.schedule_lr(tr.step)
            stats = tr.task.train_step(tr.step)
            tr.step += 1
            for k, v in stats.items():  # a key may appear at some steps only (e.g. a loss after warmup)
                sums[k] = sums.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1
            n += 1
            step = tr.step
            if step % log_every == 0 or step == total:
                means = {k: v / counts[k] for k, v in sums.items()}
                bad = [k for k, v in means.items() if not math.isfinite(v)]
                if bad:
                    raise FloatingPointError(f"{bad[0]} became {means[bad[0]]} at step {step}; lower the learning rate")
                rate = n / max(time.perf_counter() - t0, 1e-9)
                log.write({"step": step, "split": "train", **means, "throughput": rate, "unit": "steps",
                           "time": time.time()})
                lr = next(iter(tr.task.optimizers.values())).param_groups[0]["lr"] if tr.task.optimizers else 0.0
                progress.update(step, means.get("loss", 0.0), lr, rate)
                sums, counts, n, t0 = {}, {}, 0, time.perf_counter()
            else:
                progress.update(step)
            if step % eval_every == 0 or step == total:
                last_eval = tr.task.evaluate()
                if last_eval:
                    log.write({"step": step, "split": "val", **last_eval})
                    value = last_eval.get(tr.task.metric)
                    if value is not None and tr.improved(value):
                        tr.best, tr.best_step = value, step
                        tr.save_checkpoint("best.safetensors")
            signum, due = watch.poll()
            if step % ckpt_every == 0 or step == total or signum or due:
                tr.save_checkpoint()
                watch.saved()
            if signum:
                raise TrainingInterrupted(step, signum)
    summary: dict[str, Any] = {"spec": run.graph.name, "task": task_name, "steps": tr.step, "val": last_eval,
                               "metric": tr.task.metric, "best": tr.best, "best_step": tr.best_step, "out": str(out),
                               "networks": dict(tr.roles)}
    if until is not None and tr.step < total:
        return summary
    summary["weights"] = [str(p) for p in tr.save_weights(out)]
    say(f"stopped after {tr.step} steps; " + ", ".join(f"{k} {v:.4g}" for k, v in last_eval.items()))
    say(f"wrote {out}/model.safetensors, " + ", ".join(f"{net}.safetensors" for net in run.graph.networks)
        + ", metrics.jsonl, checkpoints/")
    if plot_losses(read_metrics(out / "metrics.jsonl"), out / "loss.png", f"{run.graph.name}: loss", cfg["log"]["plot"]):
        summary["plot"] = str(out / "loss.png")
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
