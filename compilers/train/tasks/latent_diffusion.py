"""``latent_diffusion``: a VAE (encoder + decoder networks) and a denoiser trained in its latent space
(Rombach et al., 2022; seed 002, "Latent Diffusion Models and Cross-Attention Conditioning").

Two stages in one run, one step counter (the simplest honest form of the paper's two-stage training):

1. steps ``0 .. vae_steps-1`` (``train.latent.vae_steps``, default half of ``steps``): the encoder and
   the decoder on the negative ELBO (:func:`..losses.elbo`, ``train.loss.recon`` / ``beta``), like the
   ``vae`` task; the denoiser is not touched. Logged as ``vae_loss`` and ``recon``.
2. at step ``vae_steps`` the VAE is frozen (no gradients, eval mode, its optimizer no longer steps) and
   the latent scale factor is fixed: ``train.latent.scale``, or 1 / std of the encoder's ``mu`` over the
   whole training split (the paper's rescaling to unit variance). From then on the denoiser trains on
   z_0 = scale · mu(x) with the DDPM ε-loss ‖ε − ε_θ(√ᾱ_t z_0 + √(1−ᾱ_t) ε, t, c)‖² (``train.diffusion``:
   T, schedule; the condition c is the class label, replaced by the null label -- the extra row of the
   denoiser's label embedding -- with probability ``diffusion.cond_drop``). Logged as ``loss``.

Sampling (:func:`sample_images`): DDPM or DDIM in latent space (:mod:`nngraph.compilers.torch.diffusion_sampling`),
then the decoder on z_0 / scale. Networks: the encoder's outputs ``z``, ``kl`` and ``mu`` (vae_reparam's),
the decoder's first output the reconstruction, the denoiser's inputs the latent (a float input of
rank >= 3), the step (fed to a timestep_embedding, or ``t``) and optionally an integer [batch] label.

Every draw (the reparameterization ε, t, the noise, the label drop) comes from generators seeded by
(seed, step), the scale factor is in the checkpoint, so a resumed run continues exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nngraph.compilers.torch.diffusion_sampling import denoiser_roles, make_schedule, q_sample, sample
from nngraph.compilers.torch.ops.generative import set_generator

from ..binding import embedding_limit
from ..data import step_generator
from . import task
from ._base import NetworksTask, input_shape, output
from .vae import array_data, networks_elbo


@task("latent_diffusion", networks=True)
class LatentDiffusionTask(NetworksTask):
    """Stage 1: the VAE on the negative ELBO; stage 2: the denoiser's ε-loss on the frozen VAE's scaled latents."""

    def __init__(self, tr: Any):
        super().__init__(tr)
        self.E, self.Dec, self.Den = self.net("encoder"), self.net("decoder"), self.net("denoiser")
        self.e_graph, self.dec_graph, self.den_graph = self.graph("encoder"), self.graph("decoder"), self.graph("denoiser")
        self._check_networks()
        self.data = array_data(self)
        self.label = next(iter(self.den_roles.other), None)
        self.null_label = self._null_label()
        d = self.cfg["diffusion"]
        self.schedule = make_schedule(d["schedule"], d["steps"], d["beta_start"], d["beta_end"], d["cosine_s"])
        lc = self.cfg["latent"]
        self.vae_steps = lc["vae_steps"] or max(self.total_steps() // 2, 1)
        self.scale: float | None = lc["scale"]
        self.frozen = False
        self.optimizers = {"vae": self.optimizer([self.E, self.Dec]), "denoiser": self.optimizer([self.Den])}

    def _check_networks(self) -> None:
        """The encoder's outputs z, kl, mu; the denoiser's inputs; one latent shape ([batch, *z_shape]) for all."""
        missing = [o for o in ("z", "kl", "mu") if o not in self.e_graph.outputs]
        if missing:
            raise self.run.error("networks", "task 'latent_diffusion': the encoder needs outputs z, kl and mu "
                                 f"(vae_reparam's and its mean), it has {', '.join(self.e_graph.outputs)}")
        try:
            self.den_roles = denoiser_roles(self.den_graph)
        except ValueError as err:
            raise self.run.error("networks", f"task 'latent_diffusion': the denoiser: {err}") from None
        self.x_shape = input_shape(self.e_graph)
        self.z_shape = tuple(self.e_graph.type_of(self.e_graph.outputs["mu"]).shape[1:])
        for what, got in (("the decoder's input", input_shape(self.dec_graph)),
                          ("the denoiser's latent input", input_shape(self.den_graph, self.den_roles.image))):
            if got != self.z_shape:
                raise self.run.error("networks", f"the encoder's latent mu is [batch, {', '.join(map(str, self.z_shape))}] "
                                     f"but {what} is [batch, {', '.join(map(str, got))}]",
                                     "give the encoder, decoder and denoiser the same latent shape")

    def _null_label(self) -> int | None:
        """The denoiser's "no class" label (its label embedding's extra last row), if it has a label and one."""
        if self.label is None:
            return None
        if "y" not in self.data.fields:
            raise self.run.error("data", f"the denoiser's input '{self.label}' wants class labels, but the data has none")
        classes = int(self.data.meta.get("num_classes", int(self.data.fields["y"].max()) + 1))
        emb = embedding_limit(self.den_graph, self.label)
        if emb and emb[1] < classes:
            raise self.run.error("data", f"the data has {classes} classes but embedding '{emb[0]}' has num={emb[1]}")
        return emb[1] - 1 if emb and emb[1] > classes else None

    # ----- stage 1: the VAE ------------------------------------------------------------------
    def vae_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return networks_elbo(self, x, self.dec_graph)

    # ----- stage 2: the denoiser --------------------------------------------------------------
    @torch.no_grad()
    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """mu(x) of the (eval-mode) encoder; unscaled."""
        x = x.float().reshape(x.shape[0], *self.x_shape)
        return self.E(**{next(iter(self.e_graph.inputs)): x})["mu"]

    def freeze(self) -> None:
        """End of stage 1: the VAE stops learning; measure the scale factor unless configured."""
        for p in [*self.E.parameters(), *self.Dec.parameters()]:
            p.requires_grad_(False)
        self.E.eval()
        self.Dec.eval()
        self.frozen = True
        if self.scale is None:
            mus = [self.latents(rows["x"]) for rows in self.data.eval_batches("train", 512)]
            self.scale = float(1.0 / torch.cat(mus).double().std().clamp_min(1e-8))

    def eps(self, z_t: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        r = self.den_roles
        kwargs = {r.image: z_t, r.step: t}
        if self.label is not None:
            kwargs[self.label] = label
        out = self.Den(**kwargs)
        return out[r.output] if isinstance(out, dict) and r.output is not None else out

    def eps_loss(self, fields: dict[str, torch.Tensor], gen: torch.Generator, drop: bool) -> torch.Tensor:
        z0 = self.latents(fields["x"]) * self.scale
        n = z0.shape[0]
        t = torch.randint(0, self.schedule.steps, (n,), generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        label = None
        if self.label is not None:
            label = fields["y"].long().clone()
            dropped = torch.rand(n, generator=gen) < self.cfg["diffusion"]["cond_drop"]
            if drop and self.null_label is not None:
                label[dropped] = self.null_label
        return F.mse_loss(self.eps(q_sample(z0, t, noise, self.schedule), t, label), noise)

    def train_step(self, step: int) -> dict[str, float]:
        fields = self.data.train_batch(step, self.cfg["batch_size"], 0, 1, self.seed)
        if step < self.vae_steps:
            self.E.train()
            self.Dec.train()
            set_generator(self.E, step_generator(self.seed, 20, step))
            loss, rec = self.vae_loss(fields["x"])
            opt = self.optimizers["vae"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return {"vae_loss": float(loss.detach()), "recon": float(rec.detach())}
        if not self.frozen:
            self.freeze()
        self.Den.train()
        loss = self.eps_loss(fields, step_generator(self.seed, 21, step), drop=True)
        opt = self.optimizers["denoiser"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Stage 1: the VAE's validation loss; stage 2: the denoiser's ε-loss on validation latents (fixed draws)."""
        batch = self.cfg["eval_batch_size"] or self.cfg["batch_size"]
        sums: dict[str, float] = {}
        n = 0
        was = self.Den.training
        self.Den.eval()
        set_generator(self.E, step_generator(self.seed, 22, 0))
        try:
            for k, fields in enumerate(self.data.eval_batches("val", batch, self.cfg["eval"]["batches"])):
                b = fields["x"].shape[0]
                if self.frozen:
                    vals = {"loss": float(self.eps_loss(fields, step_generator(self.seed, 23, k), drop=False))}
                else:
                    loss, rec = self.vae_loss(fields["x"])
                    vals = {"vae_loss": float(loss), "recon": float(rec)}
                for key, v in vals.items():
                    sums[key] = sums.get(key, 0.0) + v * b
                n += b
        finally:
            self.Den.train(was)
        return {k: v / n for k, v in sums.items()} if n else {}

    # ----- checkpoints --------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {"scale": self.scale, "frozen": self.frozen}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        if state.get("frozen"):
            self.scale = state["scale"]
            self.freeze()

    # ----- sampling -------------------------------------------------------------------------------
    def sample_images(self, n: int, labels: int | list[int] | None = None, steps: int | None = None,
                      sampler: str = "ddim", eta: float = 0.0, seed: int = 0) -> torch.Tensor:
        """``n`` decoded samples (see :func:`sample_images`); needs the VAE stage finished (the scale)."""
        if self.scale is None:
            raise ValueError("no latent scale yet: sample after the VAE stage (step >= latent.vae_steps)")
        return sample_images(self, n, labels, steps or self.cfg["latent"]["sample_steps"], sampler, eta, seed)


@torch.no_grad()
def sample_images(task: LatentDiffusionTask, n: int, labels: int | list[int] | None, steps: int, sampler: str = "ddim",
                  eta: float = 0.0, seed: int = 0) -> torch.Tensor:
    """DDPM/DDIM in latent space from z_T ~ N(0, I) (``steps`` sampled timesteps), then the decoder on
    z_0 / scale: ``n`` images of the encoder's input shape. ``labels``: one class for all, one per
    sample, or None (the null label when the denoiser has one, else 0)."""
    nets = [task.Den, task.Dec]
    modes = [m.training for m in nets]
    for m in nets:
        m.eval()
    try:
        lab = None
        if task.label is not None:
            fill = task.null_label if task.null_label is not None else 0
            lab = torch.as_tensor(labels if labels is not None else fill, dtype=torch.int64).expand(n).clone()
        z = sample(lambda x, t: task.eps(x, t, lab), (n, *task.z_shape), task.schedule, steps, sampler, eta,
                   torch.Generator().manual_seed(seed))
        img = output(task.Dec, task.dec_graph, **{next(iter(task.dec_graph.inputs)): z / task.scale})
        return img.reshape(n, *task.x_shape)
    finally:
        for m, was in zip(nets, modes):
            m.train(was)

