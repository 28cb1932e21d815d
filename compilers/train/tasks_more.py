"""Generative and graph tasks (diffusion, VAE, node and graph classification), and choosing the task of a run."""

from __future__ import annotations

from typing import Any, Iterator

import torch

from nngraph.types import is_float

from .binding import Binding, bind, output_classes
from .config import RunConfig
from .data import ArrayData, GraphSetData, NodeGraphData, TokenData, step_generator
from .losses import alphas_cumprod, cross_entropy, elbo, mse, q_sample
from .tasks import Batch, LanguageModelTask, MaskedLMTask, RegressionTask, Task, _slice


class DiffusionTask(Task):
    """DDPM training: x_t = q_sample(x0, t, ε) with t ~ U{0..T-1}; the model predicts ε; loss ‖ε − ε_θ‖²."""

    name, metric = "diffusion", "loss"

    def make_binding(self) -> Binding:
        graph = self.run.graph
        extra: dict[str, str] = {}
        ints = [n for n, gi in graph.inputs.items() if not is_float(gi.type.dtype) and gi.type.rank == 1]
        t_inp = next((n for n in ints if n in ("t", "timestep", "timesteps", "step")), ints[0] if ints else None)
        if t_inp is None:
            raise self.run.error("task", "task 'diffusion' needs an integer [batch] input for the step t",
                                 f"the graph has {', '.join(graph.inputs)}")
        extra[t_inp] = "t"
        rest = [n for n in ints if n != t_inp and not graph.inputs[n].optional]
        if rest:
            extra[rest[0]] = "label"
        avail = {"x": None, "t": None, "label": None}
        return bind(self.run, avail, self.name, extra)

    def check(self) -> None:
        if not isinstance(self.data, ArrayData) or "x" not in self.data.fields:
            raise self.run.error("data", "task 'diffusion' trains on images/arrays (x)")
        if self.binding.input_for("label") and "y" not in self.data.fields:
            raise self.run.error("data", f"graph input '{self.binding.input_for('label')}' wants class labels, "
                                 "but the data has no targets")
        d = self.cfg["diffusion"]
        self.abar = alphas_cumprod(d["steps"], d["schedule"], d["beta_start"], d["beta_end"], d["cosine_s"])
        self.null_label = None
        lab = self.binding.input_for("label")
        if lab:
            from .binding import embedding_limit
            emb = embedding_limit(self.run.graph, lab)
            classes = self.data.meta.get("num_classes", int(self.data.fields["y"].max()) + 1)
            if emb and emb[1] < classes:
                raise self.run.error("data", f"the data has {classes} classes but embedding '{emb[0]}' has num={emb[1]}")
            self.null_label = emb[1] - 1 if emb and emb[1] > classes else None

    def make_batch(self, fields, m, global_batch, rank, world) -> Batch:  # noqa: ANN001
        x0 = shape_input_x(self, fields["x"])
        g = step_generator(self.seed, 3, m)
        gshape = (global_batch, *x0.shape[1:])
        t = _slice(torch.randint(0, self.abar.numel(), (global_batch,), generator=g), rank, world)
        noise = _slice(torch.randn(gshape, generator=g), rank, world)
        drop = _slice(torch.rand(global_batch, generator=g), rank, world) < self.cfg["diffusion"]["cond_drop"]
        inputs = {self.binding.input_for("x"): q_sample(x0, t, noise, self.abar), self.binding.input_for("t"): t}
        lab = self.binding.input_for("label")
        if lab:
            y = fields["y"].clone()
            if self.null_label is not None and m >= 0:
                y[drop] = self.null_label
            inputs[lab] = y
        return Batch(inputs, {"noise": noise}, int(x0.shape[0]))

    def loss(self, outs, batch):  # noqa: ANN001, ANN201
        loss = mse(outs[self.output], batch.target["noise"])
        n = torch.tensor(batch.target["noise"].shape[0])
        return loss, {"loss_sum": loss.detach() * n, "count": n}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {"loss": sums["loss_sum"] / max(sums["count"], 1.0)}


def shape_input_x(task: Task, x: torch.Tensor) -> torch.Tensor:
    from .binding import shape_input
    return shape_input(task.run, task.binding, task.binding.input_for("x"), x)


class VAETask(Task):
    """Negative ELBO: reconstruction of x from the ``recon`` output plus beta times the ``kl`` output."""

    name, metric = "vae", "loss"

    def available(self) -> dict[str, Any]:
        return {"x": None}

    def check(self) -> None:
        outs = self.run.graph.outputs
        if "kl" not in outs:
            raise self.run.error("task", "task 'vae' needs a 'kl' output (vae_reparam's kl)",
                                 f"outputs: {', '.join(outs)}")
        if not isinstance(self.data, ArrayData) or "x" not in self.data.fields:
            raise self.run.error("data", "task 'vae' trains on arrays (x)")

    def make_batch(self, fields, m, global_batch, rank, world) -> Batch:  # noqa: ANN001
        x = shape_input_x(self, fields["x"])
        return Batch({self.binding.input_for("x"): x}, {"x": x}, int(x.shape[0]))

    def loss(self, outs, batch):  # noqa: ANN001, ANN201
        lc = self.cfg["loss"]
        loss, rec = elbo(outs[self.output], batch.target["x"], outs["kl"], lc["recon"], lc["beta"])
        n = torch.tensor(batch.target["x"].shape[0])
        return loss, {"loss_sum": loss.detach() * n, "recon_sum": rec.detach() * n, "count": n}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["count"], 1.0)
        return {"loss": sums["loss_sum"] / n, "recon": sums["recon_sum"] / n}


class NodeClassificationTask(Task):
    """Transductive node classification: full-graph forward, loss on the train mask, accuracy on val/test masks."""

    name = "node_classification"

    def available(self) -> dict[str, Any]:
        return {"x": None, "edge_index": None}

    def check(self) -> None:
        if not isinstance(self.data, NodeGraphData):
            raise self.run.error("data", "task 'node_classification' needs one graph (data: karate, or a .json / "
                                 "edge-list file)")
        have = output_classes(self.run.graph, self.output)
        if have is not None and have < self.data.num_classes:
            raise self.run.error("data", f"the graph has {self.data.num_classes} classes but output '{self.output}' "
                                 f"has {have} values per node", f"--set classes={self.data.num_classes}")

    def make_batch(self, fields, m, global_batch, rank, world) -> Batch:  # noqa: ANN001
        inputs = self.inputs_from(fields)
        return Batch(inputs, {"y": fields["y"], "mask": fields["mask"]}, int(fields["mask"].sum()))

    def eval_batches(self, split: str, batch: int, limit: int | None) -> Iterator[Batch]:
        for fields in self.data.eval_batches(split, batch, limit):
            yield self.make_batch(fields, -1, 1, 0, 1)

    def loss(self, outs, batch):  # noqa: ANN001, ANN201
        loss, correct, count = cross_entropy(outs[self.output], batch.target["y"], batch.target["mask"],
                                             self.cfg["loss"]["label_smoothing"])
        return loss, {"loss_sum": loss.detach() * count, "count": count, "correct": correct}


class GraphClassificationTask(Task):
    """Graph-level labels; a batch is several graphs concatenated (``batch`` maps nodes to graphs)."""

    name = "graph_classification"

    def available(self) -> dict[str, Any]:
        return {"x": None, "edge_index": None, "batch": None}

    def check(self) -> None:
        if not isinstance(self.data, GraphSetData):
            raise self.run.error("data", "task 'graph_classification' needs a set of graphs "
                                 "(a .json file with 'graphs')")
        have = output_classes(self.run.graph, self.output)
        if have is not None and have < self.data.num_classes:
            raise self.run.error("data", f"the data has {self.data.num_classes} classes but output '{self.output}' "
                                 f"has {have} values per graph")


TASKS = {t.name: t for t in (Task, RegressionTask, LanguageModelTask, MaskedLMTask, DiffusionTask, VAETask,
                             NodeClassificationTask, GraphClassificationTask)}


def guess_task(run: RunConfig) -> str:
    """The task when ``train.task`` is auto: from the outputs, the data named, then the graph's inputs."""
    graph, data = run.graph, run.values["data"]
    if {"recon", "kl"} <= set(graph.outputs):
        return "vae"
    named = data["builtin"]
    if named in ("text", "copy", "reverse", "parity"):
        return "language_model"
    if named == "karate":
        return "node_classification"
    if named == "digits":
        return "classification"
    path = (data["path"] or "").lower()
    if path.endswith((".txt", ".text", ".md")):
        return "language_model"
    if "edge_index" in graph.inputs:
        return "graph_classification" if "batch" in graph.inputs else "node_classification"
    ints = [gi for gi in graph.inputs.values() if not is_float(gi.type.dtype) and gi.type.rank == 2]
    return "language_model" if ints else "classification"


def make_task(run: RunConfig, task: str, data: Any) -> Task:
    """Build the task object for ``task`` on ``data``, checking graph and data agree."""
    outputs = run.graph.outputs
    output = run.values["output"] or ("recon" if task == "vae" and "recon" in outputs else
                                      "logits" if "logits" in outputs else
                                      "eps" if task == "diffusion" and "eps" in outputs else next(iter(outputs)))
    if task in ("language_model", "masked_lm") and not isinstance(data, (TokenData, ArrayData)):
        raise run.error("data", f"task '{task}' needs text or token sequences")
    return TASKS[task](run, data, output)
