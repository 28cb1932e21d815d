"""``vae``: variational autoencoders (Kingma & Welling, 2013; seed 000, "Variational Autoencoders (VAEs)"), on one
graph (outputs ``recon`` and ``kl``) or on an encoder/decoder pair of networks (the encoder's outputs ``z``, a
reparameterized sample, and ``kl``; the decoder's first output the reconstruction).

Loss: the negative ELBO, rec(x̂, x) + β·KL (:func:`..losses.elbo`; ``train.loss.recon`` picks the reconstruction
term, ``train.loss.beta`` weighs the KL); metrics: the mean loss and reconstruction term.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data import ArrayData, load_data
from ..losses import elbo
from . import task
from ._base import Batch, GraphTask, NetworksTask, input_shape, input_x, output


@task("vae")
class VAETask(GraphTask):
    """Negative ELBO: reconstruction of x from the ``recon`` output plus beta times the ``kl`` output."""

    outputs = ("recon", "logits")

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
        x = input_x(self, fields["x"])
        return Batch({self.binding.input_for("x"): x}, {"x": x}, int(x.shape[0]))

    def loss(self, outs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lc = self.cfg["loss"]
        loss, rec = elbo(outs[self.output], batch.target["x"], outs["kl"], lc["recon"], lc["beta"])
        n = torch.tensor(batch.target["x"].shape[0])
        return loss, {"loss_sum": loss.detach() * n, "recon_sum": rec.detach() * n, "count": n}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["count"], 1.0)
        return {"loss": sums["loss_sum"] / n, "recon": sums["recon_sum"] / n}


def array_data(t: NetworksTask) -> Any:
    """``train.data`` of a networks task that trains on arrays (``x`` rows); a located error otherwise."""
    from ..plan import data_base_dir

    data = load_data(t.cfg["data"], "vae", data_base_dir(t.run))
    if not isinstance(data, ArrayData) or "x" not in data.fields:
        raise t.run.error("data", f"task '{t.name}' trains on arrays (x rows)")
    return data


@task("vae", networks=True)
class VAENetworksTask(NetworksTask):
    """Negative ELBO through an encoder network (outputs ``z``, ``kl``) and a decoder network; one optimizer.

    Seeds: the batch of step s is the data's batch s; the reparameterization draws from torch's global RNG,
    whose state is in the checkpoint."""

    def __init__(self, tr: Any):
        super().__init__(tr)
        self.E, self.Dec = self.net("encoder"), self.net("decoder")
        self.e_graph, self.d_graph = self.graph("encoder"), self.graph("decoder")
        missing = [o for o in ("z", "kl") if o not in self.e_graph.outputs]
        if missing:
            raise self.run.error("networks", f"task 'vae': the encoder needs outputs z and kl (vae_reparam's), "
                                 f"it has {', '.join(self.e_graph.outputs)}")
        self.x_shape = input_shape(self.e_graph)
        self.data = array_data(self)
        self.optimizers = {"model": self.optimizer([self.E, self.Dec])}

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return networks_elbo(self, x, self.d_graph)

    def train_step(self, step: int) -> dict[str, float]:
        self.E.train()
        self.Dec.train()
        loss, rec = self.loss(self.data.train_batch(step, self.cfg["batch_size"], 0, 1, self.seed)["x"])
        opt = self.optimizers["model"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach()), "recon": float(rec.detach())}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        sums, n = {"loss": 0.0, "recon": 0.0}, 0
        for fields in self.data.eval_batches("val", self.cfg["eval_batch_size"] or self.cfg["batch_size"],
                                             self.cfg["eval"]["batches"]):
            loss, rec = self.loss(fields["x"])
            b = fields["x"].shape[0]
            sums["loss"] += float(loss) * b
            sums["recon"] += float(rec) * b
            n += b
        return {k: v / max(n, 1) for k, v in sums.items()} if n else {}


def networks_elbo(task: Any, x: torch.Tensor, dec_graph: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(negative ELBO, reconstruction term) of data rows ``x`` through ``task.E`` (outputs z, kl) and ``task.Dec``
    (graph ``dec_graph``), with ``train.loss.recon`` / ``beta``; used by ``vae`` and ``latent_diffusion``."""
    x = x.float().reshape(x.shape[0], *task.x_shape)
    enc = task.E(**{next(iter(task.e_graph.inputs)): x})
    recon = output(task.Dec, dec_graph, **{next(iter(dec_graph.inputs)): enc["z"]})
    lc = task.cfg["loss"]
    return elbo(recon, x, enc["kl"], lc["recon"], lc["beta"])
