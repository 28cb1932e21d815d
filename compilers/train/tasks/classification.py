"""Classification: rows (``classification``), the nodes of one graph (``node_classification``) and whole graphs
(``graph_classification``).

Loss: cross-entropy ``-1/N Σ_i log softmax(z_i)[y_i]`` (with ``train.loss.label_smoothing`` ε the target is
(1-ε)·onehot(y) + ε/C); metrics: the mean loss and the accuracy ``1/N Σ_i [argmax z_i = y_i]``.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ..binding import output_classes
from ..data import ArrayData, GraphSetData, NodeGraphData
from ..losses import cross_entropy
from . import task
from ._base import Batch, GraphTask


@task("classification")
class ClassificationTask(GraphTask):
    """Supervised classification on rows (``x`` -> ``y``)."""

    metric = "accuracy"

    def check(self) -> None:
        if "y" not in self.available():
            raise self.run.error("data", f"task '{self.name}' needs targets, but the data has none")
        classes = self.data.meta.get("num_classes") if isinstance(self.data, ArrayData) else self.data.num_classes
        have = output_classes(self.run.graph, self.output)
        if classes is not None and have is not None and classes > have:
            raise self.run.error("data", f"the data has {classes} classes but output '{self.output}' has {have} "
                                 "values per example", "make the output layer wider (e.g. --set classes=...)")

    def make_batch(self, fields, m, global_batch, rank, world) -> Batch:  # noqa: ANN001
        return Batch(self.inputs_from(fields), {"y": fields["y"]}, int(fields["y"].shape[0]))

    def loss(self, outs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, correct, count = cross_entropy(outs[self.output], batch.target["y"], batch.target.get("mask"),
                                             self.cfg["loss"]["label_smoothing"])
        return loss, {"loss_sum": loss.detach() * count, "count": count, "correct": correct}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums.get("count", 0.0), 1.0)
        out = {"loss": sums["loss_sum"] / n}
        if "correct" in sums:
            out["accuracy"] = sums["correct"] / n
        return out


@task("node_classification")
class NodeClassificationTask(ClassificationTask):
    """Transductive node classification: full-graph forward, loss on the train mask, accuracy on val/test masks."""

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


@task("graph_classification")
class GraphClassificationTask(ClassificationTask):
    """Graph-level labels; a batch is several graphs concatenated (``batch`` maps nodes to graphs)."""

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
