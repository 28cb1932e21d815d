"""``regression``: rows ``x`` -> real targets ``y``; loss and metric the mean squared error ``1/N Σ_i ‖ŷ_i − y_i‖²``
(:func:`..losses.mse`)."""

from __future__ import annotations

import torch

from ..losses import mse
from . import task
from ._base import Batch, GraphTask


@task("regression")
class RegressionTask(GraphTask):
    metric = "mse"

    def check(self) -> None:
        if "y" not in self.available():
            raise self.run.error("data", "task 'regression' needs targets, but the data has none")

    def make_batch(self, fields, m, global_batch, rank, world) -> Batch:  # noqa: ANN001
        return Batch(self.inputs_from(fields), {"y": fields["y"].float()}, int(fields["y"].shape[0]))

    def loss(self, outs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = mse(outs[self.output], batch.target["y"])
        n = torch.tensor(batch.target["y"].shape[0])
        return loss, {"loss_sum": loss.detach() * n, "count": n}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums["loss_sum"] / max(sums["count"], 1.0)
        return {"loss": loss, "mse": loss}
