"""``diffusion``: DDPM training of a noise predictor on one graph (Ho et al., 2020).

x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε with t ~ U{0..T−1}, ε ~ N(0, I) (:func:`..losses.q_sample`); the model predicts ε from
(x_t, t[, label]); loss ‖ε − ε_θ(x_t, t)‖² (mean). With class labels and an embedding one row larger than the
classes, a label is replaced by the null label (that extra row) with probability ``diffusion.cond_drop``
(classifier-free guidance).

Seeds: t, ε and the label drop come from a generator seeded by (seed, 3, m) for the global batch of micro-step m,
sliced per process.
"""

from __future__ import annotations

import torch

from nngraph.types import is_float

from ..binding import Binding, bind, embedding_limit
from ..data import ArrayData, step_generator
from ..losses import alphas_cumprod, mse, q_sample
from . import task
from ._base import Batch, GraphTask, input_x, rank_slice


@task("diffusion")
class DiffusionTask(GraphTask):
    """DDPM: the model predicts the noise ε of x_t = q_sample(x0, t, ε)."""

    outputs = ("logits", "eps")

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
        self.null_label = self._null_label()

    def _null_label(self) -> int | None:
        """The label that means "no class" (the embedding's extra last row), if the label embedding has one."""
        lab = self.binding.input_for("label")
        if not lab:
            return None
        emb = embedding_limit(self.run.graph, lab)
        classes = self.data.meta.get("num_classes", int(self.data.fields["y"].max()) + 1)
        if emb and emb[1] < classes:
            raise self.run.error("data", f"the data has {classes} classes but embedding '{emb[0]}' has num={emb[1]}")
        return emb[1] - 1 if emb and emb[1] > classes else None

    def make_batch(self, fields, m, global_batch, rank, world) -> Batch:  # noqa: ANN001
        x0 = input_x(self, fields["x"])
        g = step_generator(self.seed, 3, m)
        gshape = (global_batch, *x0.shape[1:])
        t = rank_slice(torch.randint(0, self.abar.numel(), (global_batch,), generator=g), rank, world)
        noise = rank_slice(torch.randn(gshape, generator=g), rank, world)
        drop = rank_slice(torch.rand(global_batch, generator=g), rank, world) < self.cfg["diffusion"]["cond_drop"]
        inputs = {self.binding.input_for("x"): q_sample(x0, t, noise, self.abar), self.binding.input_for("t"): t}
        lab = self.binding.input_for("label")
        if lab:
            y = fields["y"].clone()
            if self.null_label is not None and m >= 0:
                y[drop] = self.null_label
            inputs[lab] = y
        return Batch(inputs, {"noise": noise}, int(x0.shape[0]))

    def loss(self, outs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = mse(outs[self.output], batch.target["noise"])
        n = torch.tensor(batch.target["noise"].shape[0])
        return loss, {"loss_sum": loss.detach() * n, "count": n}
