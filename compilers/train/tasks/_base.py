"""What every task is built on: :class:`GraphTask` (one graph: data -> inputs, loss, metrics) and
:class:`NetworksTask` (a spec's networks by role: its own optimizers and step), and the :class:`Batch`.

Seeds: a graph task draws the batch of micro-step ``m`` (:mod:`..data.base`); random choices it makes (diffusion
steps and noise, masked-LM positions, label dropout) come from a generator seeded by (seed, stream, m) for the
*global* batch and are then sliced per process, like the data. A networks task draws from generators seeded by
(seed, stream, step) or from generators whose state it checkpoints (:meth:`NetworksTask.state`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from ..binding import Binding, bind, shape_input
from ..config import RunConfig
from ..data import ArrayData
from ..optim import make_optimizer

#: whether a larger value of an evaluation metric is better
HIGHER_IS_BETTER = {"accuracy": True, "loss": False, "perplexity": False, "mse": False}


@dataclass
class Batch:
    """Model inputs, targets, and the number of examples or tokens (for throughput)."""

    inputs: dict[str, torch.Tensor]
    target: dict[str, torch.Tensor] = field(default_factory=dict)
    items: int = 0
    reset_state: bool = False

    def to(self, device: torch.device) -> "Batch":
        mv = lambda d: {k: v.to(device, non_blocking=True) for k, v in d.items()}  # noqa: E731
        return Batch(mv(self.inputs), mv(self.target), self.items, self.reset_state)


def rank_slice(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Process ``rank``'s share of a global-batch tensor: rows [rank·n/world, (rank+1)·n/world)."""
    per = t.shape[0] // world
    return t[rank * per:(rank + 1) * per]


class GraphTask:
    """A task on one graph: binds data fields to graph inputs, draws batches, computes the loss and the metrics.

    Subclasses implement :meth:`check`, :meth:`make_batch`, :meth:`loss` and :meth:`metrics`. ``loss`` returns the
    mean loss of the local batch and sums for the metrics (``loss_sum``, ``count``, ...); ``metrics`` turns the
    sums over an evaluation into its numbers.
    """

    name = ""
    metric = "loss"
    unit = "examples"
    #: graph outputs the loss prefers, in order (else the graph's first output)
    outputs: tuple[str, ...] = ("logits",)

    def __init__(self, run: RunConfig, data: Any, output: str):
        self.run, self.data, self.output = run, data, output
        self.cfg = run.values
        self.seed = self.cfg["seed"]
        self.binding = self.make_binding()
        self.check()

    @classmethod
    def build(cls, run: RunConfig, data: Any) -> "GraphTask":
        """The task on ``data``, reading ``train.output`` or the first of :attr:`outputs` the graph has."""
        graph_outputs = run.graph.outputs
        output = run.values["output"] or next((o for o in cls.outputs if o in graph_outputs), next(iter(graph_outputs)))
        return cls(run, data, output)

    # -- binding and checks ------------------------------------------------
    def available(self) -> dict[str, Any]:
        return dict(self.data.fields) if isinstance(self.data, ArrayData) else {}

    def make_binding(self) -> Binding:
        return bind(self.run, self.available(), self.name)

    def check(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def inputs_from(self, fields: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {inp: shape_input(self.run, self.binding, inp, fields[fld]) for inp, fld in self.binding.fields.items()}

    # -- batches -----------------------------------------------------------
    def train_batch(self, m: int, global_batch: int, rank: int, world: int) -> Batch:
        fields = self.data.train_batch(m, global_batch, rank, world, self.seed)
        return self.make_batch(fields, m, global_batch, rank, world)

    def make_batch(self, fields: dict[str, torch.Tensor], m: int, global_batch: int, rank: int,
                   world: int) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def eval_batches(self, split: str, batch: int, limit: int | None) -> Iterator[Batch]:
        for k, fields in enumerate(self.data.eval_batches(split, batch, limit)):
            yield self.make_batch(fields, -1 - k, fields[next(iter(fields))].shape[0], 0, 1)

    def steps_per_epoch(self, global_batch: int) -> int:
        return self.data.batches_per_epoch(global_batch)

    def has_split(self, split: str) -> bool:
        return self.data.size(split) > 0

    # -- loss and metrics --------------------------------------------------
    def loss(self, outs: dict[str, torch.Tensor],
             batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Mean loss over the evaluation: ``loss_sum`` / ``count``."""
        return {"loss": sums["loss_sum"] / max(sums["count"], 1.0)}


def input_x(task: GraphTask, x: torch.Tensor) -> torch.Tensor:
    """Data rows ``x`` shaped as the graph input bound to field ``x``."""
    return shape_input(task.run, task.binding, task.binding.input_for("x"), x)


class NetworksTask:
    """A task over a spec's networks: subclasses register ``roles`` and implement :meth:`train_step`.

    It owns its optimizers (one per role, or one for all), any extra state (target networks, a replay buffer,
    the environment) and the randomness of its step (see the module docstring).
    """

    name = ""
    metric = "loss"
    higher_is_better = False
    unit = "steps"
    roles: tuple[str, ...] = ()
    eval_at_start = False  # a first evaluation would draw from RNGs the training steps use
    nonfinite_hint = "lower the learning rate"

    def __init__(self, tr: Any):
        self.tr, self.run, self.cfg = tr, tr.run, tr.cfg
        self.seed = self.cfg["seed"]
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def net(self, role: str) -> nn.Module:
        return self.tr.nets[self.tr.roles[role]]

    def graph(self, role: str) -> Any:
        return self.run.graph.networks[self.tr.roles[role]]

    def optimizer(self, modules: list[nn.Module], lr: float | None = None) -> torch.optim.Optimizer:
        """``train.optimizer`` over ``modules`` (at peak learning rate ``lr`` when given)."""
        cfg = dict(self.cfg["optimizer"])
        if lr is not None:
            cfg["lr"] = lr
        return make_optimizer(modules[0] if len(modules) == 1 else nn.ModuleList(modules), cfg)

    def total_steps(self) -> int:
        return self.cfg["steps"] or 1000

    def describe(self) -> str:
        sizes = ", ".join(f"{role} = {net} ({sum(p.numel() for p in self.tr.nets[net].parameters()):,} parameters)"
                          for role, net in self.tr.roles.items())
        return f"task {self.name}; {sizes}; {self.total_steps()} steps"

    def log_fields(self, lr: float) -> dict[str, float]:
        """What a train record adds after the task's numbers (nothing: several optimizers, several lrs)."""
        return {}

    def log_scaler(self) -> dict[str, float]:
        return {}

    def train_step(self, step: int) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def run_step(self, step: int) -> tuple[dict[str, float], int]:
        """The trainer's call: (:meth:`train_step`'s numbers, 1 step done)."""
        return self.train_step(step), 1

    def evaluate(self) -> dict[str, float]:
        return {}

    def evaluate_split(self, split: str) -> dict[str, float] | None:
        """The trainer's call: :meth:`evaluate` on the validation data (None when it reports nothing)."""
        return self.evaluate() or None

    # ----- state for the checkpoint (see ..resume) ----------------------------------------------
    def model_state(self) -> dict[str, torch.Tensor]:
        """Every network's weights, ``<network>.<spec key>``."""
        from nngraph.compilers.torch import state_dict_for

        return state_dict_for(self.tr.nets)

    def load_model(self, state: dict[str, torch.Tensor], path: Any) -> None:
        from nngraph.compilers.torch import load_state_dict

        from ...state.checkpoint import CheckpointError

        report = load_state_dict(self.tr.nets, state)
        if not report.ok:
            raise CheckpointError(f"'{path}': {report.describe()}")

    def optimizer_states(self) -> dict[str, dict[str, Any]]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

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
