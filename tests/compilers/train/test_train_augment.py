"""Image augmentation (``train.data.augment``): per-example draws from (seed, step), so the same seed gives the same
batch and the next epoch another; never at evaluation; a flip, a crop and a rotation move the pixels as their
formulas say."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from nngraph.compilers.train import train
from nngraph.compilers.train.data import DataError, load_data, step_generator
from nngraph.compilers.train.data.augment import Augment, crop_boxes, rotate
from nngraph.compilers.train.data.base import ArrayData, split_indices
from nngraph.errors import Diagnostics, SourcePos
from nngraph.train_schema import check_train

ALL = Augment(flip=0.5, crop=(0.4, 0.9), rotate=15.0, brightness=0.2, contrast=0.2)


def _images(n: int = 12, size: int = 8) -> ArrayData:
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    return ArrayData({"x": x, "y": torch.arange(n) % 2}, split_indices(n, 0.25, 0.0, 0), augment=ALL)


def test_the_same_seed_gives_the_same_augmented_batch_and_another_seed_or_epoch_another():
    ds = _images()
    n = ds.size("train")  # one batch per epoch: step m is epoch m
    a, b = ds.train_batch(0, n, 0, 1, seed=1), ds.train_batch(0, n, 0, 1, seed=1)
    assert torch.equal(a["x"], b["x"])
    plain = ArrayData(ds.fields, ds.splits)
    for m, seed in ((0, 1), (0, 2), (1, 1)):
        raw, aug = plain.train_batch(m, n, 0, 1, seed)["x"], ds.train_batch(m, n, 0, 1, seed)["x"]
        assert not torch.equal(raw, aug)
        if (m, seed) != (0, 1):  # the same examples as step 0, seed 1, augmented otherwise
            order = {tuple(r.flatten().tolist()): i for i, r in enumerate(plain.train_batch(0, n, 0, 1, 1)["x"])}
            same = [order[tuple(r.flatten().tolist())] for r in raw]
            assert (a["x"][same] - aug).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # every example looks different
    # two processes' rows together are one process's batch: the draws are the global batch's
    halves = [ds.train_batch(3, 8, r, 2, seed=5)["x"] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), ds.train_batch(3, 8, 0, 1, seed=5)["x"])


def test_evaluation_batches_are_never_augmented():
    ds = _images()
    [batch] = list(ds.eval_batches("val", 100))
    assert torch.equal(batch["x"], ds.fields["x"][ds.splits["val"]])


def test_a_flip_mirrors_the_columns_and_jitter_scales_each_image():
    x = torch.rand(6, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(Augment(flip=1.0)(x, step_generator(0, 3, 0), 6, slice(0, 6)), x.flip(-1))
    assert torch.equal(Augment(flip=0.0)(x, step_generator(0, 3, 0), 6, slice(0, 6)), x)
    out = Augment(brightness=0.5)(x, step_generator(0, 3, 0), 6, slice(0, 6))
    factor = (out / x).flatten(1)
    assert torch.allclose(factor, factor[:, :1].expand_as(factor), rtol=1e-5)  # one factor per image
    assert factor[:, 0].min() >= 0.5 and factor[:, 0].max() <= 1.5 and factor[:, 0].std() > 0.05


def test_a_resized_crop_reads_its_box_at_the_bilinear_source_coordinates():
    size, scale = 32, (0.3, 0.6)
    r, q = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    x = (100 * r + q).expand(4, 1, size, size).contiguous()  # linear in (row, column): bilinear reads it exactly
    aug = Augment(crop=scale)
    out = aug(x, step_generator(7, 3, 2), 4, slice(0, 4))
    boxes = crop_boxes(aug.draw(4, step_generator(7, 3, 2)), scale, size, size)
    i = torch.arange(size, dtype=torch.float64)
    for img, (top, left, bh, bw) in zip(out, boxes.tolist()):
        assert 0 <= top and top + bh <= size and 0 <= left and left + bw <= size
        assert scale[0] - 0.1 <= bh * bw / size**2 <= scale[1] + 0.1 and 3 / 4 - 0.1 <= bw / bh <= 4 / 3 + 0.1
        src_r = (top + (i + 0.5) * bh / size - 0.5).clamp(top, top + bh - 1)  # align_corners=False, clamped
        src_q = (left + (i + 0.5) * bw / size - 0.5).clamp(left, left + bw - 1)
        want = 100 * src_r[:, None] + src_q[None, :]
        assert torch.allclose(img[0].double(), want, atol=1e-3)


def test_a_rotation_by_90_degrees_is_numpys_quarter_turn():
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    got = rotate(x, torch.tensor([90.0, -90.0], dtype=torch.float64))
    want = [np.rot90(x[0].numpy(), 1, axes=(1, 2)), np.rot90(x[1].numpy(), -1, axes=(1, 2))]
    assert np.allclose(got.numpy(), np.stack(want), atol=1e-5)
    assert torch.allclose(rotate(x, torch.zeros(2, dtype=torch.float64)), x, atol=1e-6)


def _cfg(**data):
    return check_train({"data": data}, Diagnostics(), SourcePos("t")).values["data"]


def test_augment_is_configured_in_the_data_section_and_refused_for_non_images(tmp_path, write_spec):
    root = tmp_path / "imgs"
    for name, rgb in {"dark": (20, 20, 20), "light": (230, 230, 230)}.items():
        (root / name).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (9, 9), tuple(c + 3 * i for c in rgb)).save(root / name / f"{i}.png")
    ds = load_data(_cfg(path=str(root), image_size=8, augment={"crop": [0.5, 1.0], "rotate": 10}), "classification",
                   tmp_path)
    assert ds.augment == Augment(flip=0.5, crop=(0.5, 1.0), rotate=10.0)
    assert load_data(_cfg(path=str(root), augment=0.25), "classification", tmp_path).augment.flip == 0.25
    with pytest.raises(DataError, match=r"digits: data.augment transforms images \[C, H, W\].*this data is \[64\]"):
        load_data(_cfg(builtin="digits", augment=True), "classification", tmp_path)
    s = train(write_spec(), out=tmp_path / "run", data=str(root), steps=6, quiet=True,
              overrides=["d_in=192", "classes=2", "train.batch_size=4", "train.data.image_size=8",
                         "train.data.augment.crop=[0.5,1.0]"])
    assert s["steps"] == 6 and math.isfinite(s["test"]["loss"])
