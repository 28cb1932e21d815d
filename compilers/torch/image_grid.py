"""Image grids as PNG files, written with zlib + struct only (no imaging library).

:func:`grid` tiles a batch [N, C, H, W] of images in [lo, hi] into one uint8 image; :func:`png_bytes`
encodes an [H, W] (grayscale) or [H, W, 3] (RGB) uint8 array as a PNG (8-bit, no interlace,
filter 0 on every row, CRCs per chunk); :func:`write_grid_png` does both and writes atomically.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import torch

from nngraph.io import write_bytes_atomic


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, scale: int = 1,
         value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """[N, C, H, W] floats -> [rows·(H·scale+pad)+pad, cols·(W·scale+pad)+pad(, 3)] uint8 tile image.

    C = 1 gives a grayscale grid, C = 3 an RGB one; other channel counts show channel 0.
    Values are mapped linearly from ``value_range`` to 0..255 and clipped.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {list(images.shape)}")
    imgs = images.detach().float().cpu()
    if imgs.shape[1] not in (1, 3):
        imgs = imgs[:, :1]
    lo, hi = value_range
    imgs = ((imgs - lo) / (hi - lo) * 255.0).round().clamp(0, 255).to(torch.uint8)
    if scale > 1:
        imgs = imgs.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    n, c, h, w = imgs.shape
    cols = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    canvas = torch.zeros(c, rows * (h + padding) + padding, cols * (w + padding) + padding, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        canvas[:, y:y + h, x:x + w] = imgs[i]
    return canvas[0] if c == 1 else canvas.permute(1, 2, 0).contiguous()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(image: torch.Tensor) -> bytes:
    """PNG file contents for a uint8 [H, W] (grayscale) or [H, W, 3] (RGB) tensor."""
    if image.dtype != torch.uint8 or image.dim() not in (2, 3) or (image.dim() == 3 and image.shape[2] != 3):
        raise ValueError(f"expected uint8 [H, W] or [H, W, 3], got {image.dtype} {list(image.shape)}")
    h, w = image.shape[:2]
    color = 0 if image.dim() == 2 else 2
    flat = image.reshape(h, -1).contiguous()
    try:
        rows = flat.numpy().tobytes()
    except RuntimeError:  # torch built without numpy
        rows = bytes(flat.reshape(-1).tolist())
    stride = len(rows) // h if h else 0
    raw = b"".join(b"\x00" + rows[i * stride:(i + 1) * stride] for i in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))


def write_grid_png(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 1,
                   value_range: tuple[float, float] = (-1.0, 1.0)) -> tuple[int, int]:
    """Tile ``images`` and write them to ``path`` as a PNG (atomically); returns (width, height)."""
    tiled = grid(images, nrow=nrow, scale=scale, value_range=value_range)
    write_bytes_atomic(path, png_bytes(tiled))
    return int(tiled.shape[1]), int(tiled.shape[0])
