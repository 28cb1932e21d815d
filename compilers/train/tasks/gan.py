"""``gan`` and ``wgan``: a generator against a discriminator / critic, two networks with one optimizer each.

* ``gan`` (Goodfellow et al., 2014; seed 000, "Generative Adversarial Networks (GANs)"): the
  discriminator D (a logit) takes ``train.gan.d_steps`` steps on -log σ(D(x)) - log(1 - σ(D(G(z))))
  per generator step on the non-saturating loss -log σ(D(G(z))).
* ``wgan`` (Arjovsky et al., 2017; Gulrajani et al., 2017): the critic takes ``d_steps`` (default 5)
  steps on E[D(G(z))] - E[D(x)] + λ E[(‖∇D(x̂)‖ - 1)²] (x̂ on lines between real and fake, λ =
  ``gan.gp``), optionally clipping its weights to [-c, c] (``gan.clip``) after each step; the
  generator minimizes -E[D(G(z))].

Data: ``data: gaussians`` is the 2-D mixture of ``gan.modes`` Gaussians on a ring (radius
``gan.radius``, std ``gan.std``), drawn fresh at every step; evaluation then scores how many modes
the generator covers. Any other dataset is the usual ``train.data`` (its ``x`` rows, reshaped to
the discriminator's input; ``gan.rescale`` maps [0, 1] pixels to [-1, 1] for a tanh generator), and
evaluation reports the discriminator's loss on validation images and how far the generated samples' pixel
mean and std are from the real ones (``mean_gap``, ``std_gap``).

Seeds: every draw comes from a generator seeded by (seed, stream, step): the ring data 11, z of the
discriminator steps 12, z of the generator step 13, the evaluation's fixed z 14 and real points 15, the
gradient penalty's mixing weights 16; so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..data import step_generator
from . import task
from ._base import NetworksTask, input_shape, output
from .vae import array_data


def ring_modes(k: int, radius: float) -> torch.Tensor:
    """The ``k`` means of the ring mixture: radius·(cos 2πi/k, sin 2πi/k)."""
    angles = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    return (radius * torch.stack([angles.cos(), angles.sin()], 1)).float()


def sample_ring(n: int, modes: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` points of the equal-weight mixture of N(mode, std² I)."""
    idx = torch.randint(0, modes.shape[0], (n,), generator=gen)
    return modes[idx] + std * torch.randn(n, modes.shape[1], generator=gen)


def mode_coverage(samples: torch.Tensor, modes: torch.Tensor, std: float) -> dict[str, float]:
    """How well ``samples`` cover the mixture (the unrolled-GAN metric of Metz et al., 2017):

    ``hq``: fraction of samples within 3 std of their nearest mode; ``modes``: modes that receive at
    least a quarter of their fair share (n / 4k) of such high-quality samples; ``min_share``: the
    smallest share of all samples any mode gets; ``dist``: mean distance to the nearest mode."""
    d = torch.cdist(samples.double(), modes.double())
    dist, nearest = d.min(1)
    close = dist <= 3 * std
    counts = torch.bincount(nearest[close], minlength=modes.shape[0])
    share = torch.bincount(nearest, minlength=modes.shape[0]).double() / samples.shape[0]
    need = samples.shape[0] / (4 * modes.shape[0])
    return {"modes": float((counts >= need).sum()), "hq": float(close.double().mean()),
            "min_share": float(share.min()), "dist": float(dist.mean())}


@task("gan", networks=True)
class GANTask(NetworksTask):
    """Generator against discriminator with the non-saturating loss (``wgan``: :class:`WGANTask`)."""

    critic_role = "discriminator"
    default_d_steps = 1

    def __init__(self, tr: Any):
        super().__init__(tr)
        gc = self.cfg["gan"]
        self.G, self.D = self.net("generator"), self.net(self.critic_role)
        self.g_graph, self.d_graph = self.graph("generator"), self.graph(self.critic_role)
        self.z_shape = input_shape(self.g_graph)
        self.x_shape = input_shape(self.d_graph)
        out_t = self.g_graph.type_of(next(iter(self.g_graph.outputs.values())))
        if tuple(out_t.shape[1:]) != self.x_shape:
            raise self.run.error("networks", f"the generator makes [{', '.join(map(str, out_t.shape))}] but the {self.critic_role} "
                                 f"takes [batch, {', '.join(map(str, self.x_shape))}]",
                                 "make the generator's output the discriminator's input")
        self.d_steps = gc["d_steps"] or self.default_d_steps
        self.batch = self.cfg["batch_size"]
        self.optimizers = {"generator": self.optimizer([self.G]),
                           self.critic_role: self.optimizer([self.D], gc["d_lr"])}
        self.toy = self.cfg["data"]["builtin"] == "gaussians"
        if self.toy:
            if self.x_shape != (2,):
                raise self.run.error("data", f"data 'gaussians' is 2-D points, but the {self.critic_role} takes "
                                     f"[batch, {', '.join(map(str, self.x_shape))}]")
            self.modes = ring_modes(gc["modes"], gc["radius"])
            self.metric, self.higher_is_better = "hq", True
        else:
            self.data = array_data(self)
            self.metric = "d_loss"

    # ----- draws (functions of the step) ------------------------------------------------
    def real(self, m: int) -> torch.Tensor:
        if self.toy:
            gc = self.cfg["gan"]
            return sample_ring(self.batch, self.modes, gc["std"], step_generator(self.seed, 11, m))
        x = self.data.train_batch(m, self.batch, 0, 1, self.seed)["x"]
        return self.as_input(x)

    def as_input(self, x: torch.Tensor) -> torch.Tensor:
        """Data rows as the discriminator's input: reshaped, and mapped [0, 1] -> [-1, 1] with ``gan.rescale``."""
        x = x.float().reshape(x.shape[0], *self.x_shape)
        return x * 2 - 1 if self.cfg["gan"]["rescale"] else x

    def noise(self, stream: int, m: int, n: int | None = None) -> torch.Tensor:
        return torch.randn(n or self.batch, *self.z_shape, generator=step_generator(self.seed, stream, m))

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return output(self.G, self.g_graph, **{next(iter(self.g_graph.inputs)): z})

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return output(self.D, self.d_graph, **{next(iter(self.d_graph.inputs)): x})

    # ----- losses -------------------------------------------------------------------------
    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, m: int) -> torch.Tensor:
        """-log σ(D(x)) - log(1 - σ(D(G(z)))), as softplus of the logits."""
        return F.softplus(-self.score(real)).mean() + F.softplus(self.score(fake)).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """Non-saturating: -log σ(D(G(z)))."""
        return F.softplus(-self.score(fake)).mean()

    def after_d_step(self) -> None:
        pass

    def train_step(self, step: int) -> dict[str, float]:
        self.G.train()
        self.D.train()
        opt_g, opt_d = self.optimizers["generator"], self.optimizers[self.critic_role]
        d_total = 0.0
        for k in range(self.d_steps):
            m = step * self.d_steps + k
            with torch.no_grad():
                fake = self.generate(self.noise(12, m))
            loss = self.d_loss(self.real(m), fake, m)
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
            self.after_d_step()
            d_total += float(loss.detach())
        for p in self.D.parameters():
            p.requires_grad_(False)
        try:
            g = self.g_loss(self.generate(self.noise(13, step)))
            opt_g.zero_grad(set_to_none=True)
            g.backward()
            opt_g.step()
        finally:
            for p in self.D.parameters():
                p.requires_grad_(True)
        return {"loss": float(g.detach()), "d_loss": d_total / self.d_steps}

    @torch.no_grad()
    def samples(self, n: int) -> torch.Tensor:
        """``n`` generated samples from fixed noise (the same at every evaluation), in eval mode."""
        was = self.G.training
        self.G.eval()
        try:
            return self.generate(self.noise(14, 0, n))
        finally:
            self.G.train(was)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        gc = self.cfg["gan"]
        fake = self.samples(gc["samples"])
        if self.toy:
            real = sample_ring(gc["samples"], self.modes, gc["std"], step_generator(self.seed, 15, 0))
            return {**mode_coverage(fake, self.modes, gc["std"]), "d_loss": float(self.d_loss(real, fake, -1))}
        rows = next(self.data.eval_batches("val", gc["samples"], 1), None)
        real = self.as_input(rows["x"]) if rows is not None else self.real(-1)
        fake = fake[: real.shape[0]]
        was = self.D.training
        self.D.eval()  # batch norm: running statistics, and evaluation leaves them as they were
        try:
            d = float(self.d_loss(real, fake, -1))
        finally:
            self.D.train(was)
        return {"d_loss": d, "mean_gap": float((fake.mean() - real.mean()).abs()),
                "std_gap": float((fake.std() - real.std()).abs())}


@task("wgan", networks=True)
class WGANTask(GANTask):
    """Critic with gradient penalty (``gan.gp``) and/or weight clipping (``gan.clip``)."""

    critic_role = "critic"
    default_d_steps = 5

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, m: int) -> torch.Tensor:
        loss = self.score(fake).mean() - self.score(real).mean()
        lam = self.cfg["gan"]["gp"]
        if lam and torch.is_grad_enabled():
            eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=step_generator(self.seed, 16, m))
            mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
            grad, = torch.autograd.grad(self.score(mix).sum(), mix, create_graph=True)
            loss = loss + lam * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        return loss

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -self.score(fake).mean()

    def after_d_step(self) -> None:
        c = self.cfg["gan"]["clip"]
        if c:
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-c, c)
