"""Denoising diffusion in torch: noise schedules, q_sample, the ε-prediction loss, DDPM and DDIM samplers.

Seed 000, "Diffusion Models": the forward Markov chain q(x_t | x_{t-1}) = N(√(1−β_t) x_{t-1}, β_t I)
and a network trained to reverse it; seed 002, "Denoising Diffusion Probabilistic Models": the
network "takes the noisy image and the time step t as input" and predicts the noise. Conventions
(those of Ho et al. and of diffusers' schedulers, so the two agree step for step):

* steps are 0-based, t ∈ {0, ..., T−1}; ᾱ_t = Π_{s≤t} (1 − β_s);
* :func:`q_sample`: x_t = √ᾱ_t · x_0 + √(1−ᾱ_t) · ε;
* :func:`eps_loss`: E_{t, ε} ‖ε − ε_θ(x_t, t)‖² (the "simple" loss), t uniform;
* sampling runs on ``steps`` timesteps spaced T//steps apart ("leading" spacing:
  t = (steps−1)·T//steps, ..., T//steps, 0); ᾱ before step 0 is 1;
* :func:`ddpm_step` -- ancestral sampling from the posterior q(x_{t'} | x_t, x̂_0) with
  x̂_0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t, mean (√ᾱ_{t'} β'_t x̂_0 + √α'_t (1−ᾱ_{t'}) x_t)/(1−ᾱ_t) and
  variance β̃ = (1−ᾱ_{t'})/(1−ᾱ_t) · β'_t, where α'_t = ᾱ_t/ᾱ_{t'} and β'_t = 1 − α'_t (t' the
  previous sampled step; β'_t = β_t when every step is sampled); no noise at the last step;
* :func:`ddim_step` (Song et al.): x_{t'} = √ᾱ_{t'} x̂_0 + √(1−ᾱ_{t'}−σ²) ε̂ + σ z with
  σ = η·√β̃; η = 0 is deterministic, η = 1 has exactly the DDPM posterior variance (and mean).

Noise comes from an explicit ``torch.Generator``: the initial x_T first, then one draw per step
that adds noise, so a seed reproduces the samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F

#: ε_θ(x_t, t) -> predicted noise, t a [batch] int64 tensor
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Schedule:
    """β_t and ᾱ_t for t = 0..T-1 (float64, CPU)."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor

    @property
    def steps(self) -> int:
        return self.betas.shape[0]

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t, with ᾱ_{-1} = 1 (before the first step)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def posterior_variance(self, t: int, prev: int | None = None) -> float:
        """β̃ = (1−ᾱ_{t'})/(1−ᾱ_t) · (1 − ᾱ_t/ᾱ_{t'}) for the step t -> t' (default t' = t−1)."""
        prev = t - 1 if prev is None else prev
        ab_t, ab_prev = self.alpha_bar(t), self.alpha_bar(prev)
        return (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)


@lru_cache(maxsize=32)
def make_schedule(kind: str = "linear", steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                  cosine_s: float = 0.008) -> Schedule:
    """The β schedule: ``linear`` from beta_start to beta_end (Ho et al.), or ``cosine``
    ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s) · π/2), β clipped at 0.999 (Nichol & Dhariwal)."""
    if steps < 1:
        raise ValueError(f"a schedule needs at least 1 step, got {steps}")
    if kind == "linear":
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    elif kind == "cosine":
        def f(i: torch.Tensor) -> torch.Tensor:
            return torch.cos((i / steps + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
        i = torch.arange(steps, dtype=torch.float64)
        betas = (1 - f(i + 1) / f(i)).clamp(max=0.999)
    else:
        raise ValueError(f"unknown schedule {kind!r}; use linear or cosine")
    return Schedule(betas, torch.cumprod(1 - betas, dim=0))


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def check_steps(t: torch.Tensor, steps: int) -> None:
    """Raise ValueError naming the first step outside 0..steps-1."""
    if t.numel() and (t.min().item() < 0 or t.max().item() >= steps):
        bad = int(t[(t < 0) | (t >= steps)][0])
        raise ValueError(f"diffusion step {bad} is out of range: t must be in 0..{steps - 1}")


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """x_t = √ᾱ_t · x_0 + √(1−ᾱ_t) · ε, per sample (t [batch] of 0-based steps)."""
    check_steps(t, schedule.steps)
    ab = _per_sample(schedule.alphas_cumprod, t.long(), x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def eps_loss(model: Denoiser, x0: torch.Tensor, schedule: Schedule, generator: torch.Generator | None = None
             ) -> torch.Tensor:
    """The simple DDPM loss: mean ‖ε − ε_θ(x_t, t)‖² with t ~ U{0..T−1} and ε ~ N(0, I) per sample."""
    t = torch.randint(0, schedule.steps, (x0.shape[0],), generator=generator, device="cpu").to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device="cpu").to(x0.device)
    return F.mse_loss(model(q_sample(x0, t, noise, schedule), t), noise)


def timesteps(train_steps: int, steps: int) -> list[int]:
    """The sampled steps, last to first, T//steps apart ("leading" spacing): [(steps−1)·r, ..., r, 0]."""
    if not 1 <= steps <= train_steps:
        raise ValueError(f"sampling steps must be in 1..{train_steps} (the schedule's steps), got {steps}")
    ratio = train_steps // steps
    return [i * ratio for i in range(steps - 1, -1, -1)]


def _x0_hat(x_t: torch.Tensor, eps: torch.Tensor, ab_t: float, clip: float | None) -> torch.Tensor:
    x0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    return x0.clamp(-clip, clip) if clip is not None else x0


def ddpm_step(eps: torch.Tensor, t: int, prev: int, x_t: torch.Tensor, schedule: Schedule,
              noise: torch.Tensor | None = None, clip: float | None = None) -> torch.Tensor:
    """One ancestral step x_t -> x_{prev} from the posterior (module docstring); ``noise`` unused at t = 0."""
    ab_t, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(prev)
    alpha, beta = ab_t / ab_prev, 1 - ab_t / ab_prev
    x0 = _x0_hat(x_t, eps, ab_t, clip)
    mean = (math.sqrt(ab_prev) * beta / (1 - ab_t)) * x0 + (math.sqrt(alpha) * (1 - ab_prev) / (1 - ab_t)) * x_t
    if t > 0 and noise is not None:
        mean = mean + math.sqrt(max(schedule.posterior_variance(t, prev), 1e-20)) * noise
    return mean


def ddim_step(eps: torch.Tensor, t: int, prev: int, x_t: torch.Tensor, schedule: Schedule, eta: float = 0.0,
              noise: torch.Tensor | None = None, clip: float | None = None) -> torch.Tensor:
    """One DDIM step x_t -> x_{prev} with σ = η·√β̃ (module docstring)."""
    ab_t, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(prev)
    x0 = _x0_hat(x_t, eps, ab_t, clip)
    var = eta ** 2 * schedule.posterior_variance(t, prev)
    out = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - var, 0.0)) * eps
    if eta > 0 and noise is not None:
        out = out + math.sqrt(var) * noise
    return out


@torch.no_grad()
def sample(model: Denoiser, shape: tuple[int, ...], schedule: Schedule, steps: int | None = None,
           sampler: str = "ddpm", eta: float = 0.0, generator: torch.Generator | None = None,
           clip: float | None = None, device: torch.device | str = "cpu",
           x_T: torch.Tensor | None = None) -> torch.Tensor:
    """Run the reverse process from x_T ~ N(0, I) (or the given ``x_T``) down to x_0.

    ``sampler`` ddpm (ancestral) or ddim (with ``eta``); ``steps`` sampled timesteps (default: all T);
    ``clip`` clamps x̂_0 to [−clip, clip] (e.g. 1.0 for images in [−1, 1]).
    """
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"unknown sampler {sampler!r}; use ddpm or ddim")
    ts = timesteps(schedule.steps, steps or schedule.steps)
    ratio = schedule.steps // len(ts)
    x = x_T.clone() if x_T is not None else torch.randn(shape, generator=generator).to(device)
    for t in ts:
        prev = t - ratio
        eps = model(x, torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device))
        if sampler == "ddpm":
            noise = torch.randn(x.shape, generator=generator).to(x.device) if t > 0 else None
            x = ddpm_step(eps, t, prev, x, schedule, noise, clip)
        else:
            noise = torch.randn(x.shape, generator=generator).to(x.device) if eta > 0 else None
            x = ddim_step(eps, t, prev, x, schedule, eta, noise, clip)
    return x


# ----- a compiled denoiser as ε_θ(x_t, t) --------------------------------------------------
@dataclass
class DenoiserRoles:
    """How a compiled model's graph inputs serve a sampler."""

    image: str
    step: str
    other: dict[str, int]
    output: str | None


def denoiser_roles(graph, cond: dict[str, int] | None = None) -> DenoiserRoles:
    """Find the image input (the float input of rank >= 3, preferably ``x``), the step input (fed to a
    timestep_embedding, else ``t``) and fill every other required [batch] integer input from ``cond``
    (default 0, e.g. a class label). Raises ValueError when the graph does not look like a denoiser."""
    from nngraph.types import is_float, is_int

    cond = dict(cond or {})
    required = {n: gi for n, gi in graph.inputs.items() if not gi.optional}
    images = [n for n, gi in required.items() if is_float(gi.type.dtype) and gi.type.rank >= 3]
    if len(images) > 1 and "x" in images:
        images = ["x"]
    if len(images) != 1:
        raise ValueError(f"a denoiser needs exactly one float image input of rank >= 3, found "
                         f"{', '.join(images) or 'none'}")
    fed = {r.node for node in graph.nodes.values() if node.op == "timestep_embedding" for r in node.all_refs()}
    steps = [n for n, gi in required.items() if n in fed and gi.type.rank == 1]
    if not steps and "t" in required:
        steps = ["t"]
    if len(steps) != 1:
        raise ValueError("cannot tell which input takes the diffusion step: feed it to a timestep_embedding "
                         "or name it 't'")
    other: dict[str, int] = {}
    for name, gi in required.items():
        if name in (images[0], steps[0]):
            continue
        if not is_int(gi.type.dtype) or gi.type.rank != 1:
            raise ValueError(f"input '{name}' {gi.type.shape} ({gi.type.dtype}) has no value when sampling: "
                             "only integer [batch] conditioning inputs (e.g. labels) can be filled with --cond")
        other[name] = int(cond.pop(name, 0))
    if cond:
        raise ValueError(f"--cond names no conditioning input: {', '.join(cond)} (inputs: {', '.join(other) or 'none'})")
    output = "eps" if "eps" in graph.outputs else next(iter(graph.outputs))
    return DenoiserRoles(images[0], steps[0], other, output if len(graph.outputs) > 1 else None)


def as_denoiser(module: torch.nn.Module, roles: DenoiserRoles) -> Denoiser:
    """ε_θ(x_t, t) calling the compiled model with its conditioning inputs filled in."""

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        kwargs = {roles.image: x, roles.step: t}
        kwargs.update({k: torch.full((x.shape[0],), v, dtype=torch.int64, device=x.device)
                       for k, v in roles.other.items()})
        out = module(**kwargs)
        return out[roles.output] if roles.output is not None else out

    return eps


#: float32 image batches the sampler holds at once: x_t, the predicted noise, the fresh noise, x_{t-1}
SAMPLER_COPIES = 4


def check_sample_memory(num: int, shape: tuple[int, ...], scale: int) -> None:
    """ValueError when ``num`` samples of ``shape`` cannot fit in memory: the sampler's image batches plus the
    PNG grid (RGB bytes, each pixel ``scale`` x ``scale``); the network's own activations come on top."""
    from nngraph.readers import human_bytes, machine_memory

    per_image = math.prod(shape[1:])
    pixels = math.prod(shape[-2:]) if len(shape) >= 3 else per_image
    need = num * (SAMPLER_COPIES * 4 * per_image + 3 * pixels * scale * scale)
    if need > machine_memory():
        raise ValueError(f"-n {num}: {num:,} samples of {list(shape[1:])} need at least {human_bytes(need)} (the "
                         f"sampler's images and the PNG grid), more than this machine's "
                         f"{human_bytes(machine_memory())} of memory: sample fewer")


def sample_to_png(graph, output, weights=None, steps: int = 50, seed: int = 0, num: int = 16, sampler: str = "ddpm",
                  eta: float = 0.0, schedule: str = "linear", train_steps: int = 1000, beta_start: float = 1e-4,
                  beta_end: float = 0.02, cond: dict[str, int] | None = None, sizes: dict[str, int] | None = None,
                  scale: int | None = None, clip: float | None = 1.0) -> list[str]:
    """Compile ``graph``, load ``weights`` (strict; without them the seeded initial weights), sample ``num``
    images with the chosen sampler and write them as a grid PNG to ``output``; returns report lines."""
    from . import build_module, load_state_dict
    from .check import concrete_shape
    from .image_grid import write_grid_png
    from .weights import check_fingerprint, load_weights

    roles = denoiser_roles(graph, cond)
    shape = concrete_shape(graph.inputs[roles.image].type, {**(sizes or {}), "batch": num})
    h = shape[-2] if len(shape) >= 4 else 1
    scale = scale or max(1, 64 // max(h, 1))
    check_sample_memory(num, shape, scale)
    module = build_module(graph, seed=seed).eval()
    lines = []
    if weights is not None:
        loaded = load_weights(weights)
        warning = check_fingerprint(loaded, graph, weights)
        if warning:
            lines.append(f"warning: {warning}")
        load_state_dict(module, loaded.tensors, strict=warning is None)
        lines.append(f"loaded {weights}")
    else:
        lines.append("note: no --weights given: sampling from the untrained initial weights (noise-like images)")
    sched = make_schedule(schedule, train_steps, beta_start, beta_end)
    gen = torch.Generator().manual_seed(seed)
    images = sample(as_denoiser(module, roles), shape, sched, steps, sampler, eta, gen, clip)
    if not torch.isfinite(images).all():
        raise ValueError("sampling produced non-finite values (check --schedule/--train-steps against training)")
    width, height = write_grid_png(images if images.dim() == 4 else images.unsqueeze(1), output, scale=scale)
    cond_text = ", ".join(f"{k}={v}" for k, v in roles.other.items())
    lines.append(f"wrote {output} ({num} samples {list(shape[1:])}, {sampler}, {steps} steps"
                 f"{', eta=' + str(eta) if sampler == 'ddim' else ''}{', ' + cond_text if cond_text else ''}; "
                 f"{width}x{height} px)")
    return lines
