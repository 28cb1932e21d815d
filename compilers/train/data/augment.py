"""Image augmentation of training batches (``train.data.augment``): random resized crop, horizontal flip, small
rotation, brightness and contrast jitter, each a short function of torch ops.

Why not torchvision.transforms.v2: the torchvision wheel that matches the pinned torch (0.28.0 for 2.13.0) is a
CUDA build whose ``import torchvision`` fails against the CPU torch ("operator torchvision::nms does not exist"),
and v2 draws one set of parameters per call from torch's global generator, so a batch would share one crop and
the training RNG (dropout) would move. Here every example's parameters come from the batch's own generator
(:func:`.base.step_generator` of (seed, step)), drawn for the whole global batch before a process takes its rows:
the same seed gives the same augmented batch, on 1 or N processes, a resumed run included, and the next epoch
draws new ones. Evaluation batches are never augmented. The transforms act on the stored values (images in
[0, 1], or standardized when ``data.normalize`` is on); nothing is clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

RATIO = (3 / 4, 4 / 3)  # the crop's aspect-ratio range (torchvision's default)


@dataclass(frozen=True)
class Augment:
    """The ``train.data.augment`` settings; :meth:`__call__` augments the rows of one process."""

    flip: float = 0.0
    crop: tuple[float, float] | None = None
    rotate: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0

    @classmethod
    def of(cls, cfg: dict[str, Any]) -> "Augment":
        return cls(cfg["flip"], tuple(cfg["crop"]) if cfg["crop"] else None, cfg["rotate"], cfg["brightness"],
                   cfg["contrast"])

    def draw(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Each of ``n`` examples' parameters, uniform draws in a fixed order (all drawn whether used or not, so
        turning one transform on does not move the others')."""
        u = torch.rand(8, n, generator=gen, dtype=torch.float64)
        return {"flip": u[0] < self.flip, "area": u[1], "ratio": u[2], "top": u[3], "left": u[4],
                "angle": (2 * u[5] - 1) * self.rotate, "bright": u[6], "contrast": u[7]}

    def __call__(self, x: torch.Tensor, gen: torch.Generator, global_batch: int, rows: slice) -> torch.Tensor:
        """``x`` [b, C, H, W]: the rows ``rows`` of a global batch whose parameters ``gen`` draws."""
        p = {k: v[rows] for k, v in self.draw(global_batch, gen).items()}
        if self.crop is not None:
            x = resized_crop(x, crop_boxes(p, self.crop, x.shape[-2], x.shape[-1]))
        x = torch.where(p["flip"].view(-1, 1, 1, 1), x.flip(-1), x)
        if self.rotate:
            x = rotate(x, p["angle"])
        if self.brightness:
            x = x * _factor(p["bright"], self.brightness).view(-1, 1, 1, 1)
        if self.contrast:
            x = contrast(x, _factor(p["contrast"], self.contrast))
        return x


def _factor(u: torch.Tensor, amount: float) -> torch.Tensor:
    """A jitter factor uniform in [1 - amount, 1 + amount] (never below 0) from uniforms ``u`` in [0, 1)."""
    return (1 - amount + 2 * amount * u).clamp_min(0).float()


def crop_boxes(p: dict[str, torch.Tensor], scale: tuple[float, float], h: int, w: int) -> torch.Tensor:
    """Integer boxes [n, 4] = (top, left, height, width): area fraction a ~ U(scale), log aspect ratio
    r ~ U(log 3/4, log 4/3); width = round(sqrt(a·H·W·e^r)), height = round(sqrt(a·H·W/e^r)), each clamped to
    [1, side]; the corner uniform over the positions that keep the box inside the image."""
    area = (scale[0] + (scale[1] - scale[0]) * p["area"]) * h * w
    ratio = torch.exp(math.log(RATIO[0]) + (math.log(RATIO[1]) - math.log(RATIO[0])) * p["ratio"])
    bw = torch.sqrt(area * ratio).round().clamp(1, w).long()
    bh = torch.sqrt(area / ratio).round().clamp(1, h).long()
    top = (p["top"] * (h - bh + 1)).floor().long()
    left = (p["left"] * (w - bw + 1)).floor().long()
    return torch.stack([top, left, bh, bw], dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each image's box resized back to H x W, bilinear (align_corners=False: output pixel i reads the box at
    (i + 0.5)·h/H - 0.5, clamped to the box)."""
    size = x.shape[-2:]
    out = [F.interpolate(img[None, :, t:t + bh, lft:lft + bw], size=size, mode="bilinear", align_corners=False)
           for img, (t, lft, bh, bw) in zip(x, boxes.tolist())]
    return torch.cat(out) if out else x


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Each image turned by its angle θ about its centre (positive: counter-clockwise, as numpy.rot90), bilinear;
    corners that come from outside are 0. Output pixel p (centred normalized coordinates, y down) reads the input
    at [[cos θ, -sin θ·H/W], [sin θ·W/H, cos θ]]·p (the aspect ratio kept)."""
    h, w = x.shape[-2:]
    t = torch.deg2rad(degrees).float()
    cos, sin = torch.cos(t), torch.sin(t)
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def contrast(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """x' = m + c·(x - m), m the image's mean over channels and pixels."""
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return m + c.view(-1, 1, 1, 1) * (x - m)
