"""Hugging Face ``datasets`` folders written by ``save_to_disk`` as training data: columns map as a Parquet table's
(the label column is ``y``, the others ``x``), a DatasetDict's splits are the run's, the batches hold the saved
rows, and a bad row is named by folder, split and row."""

from __future__ import annotations

import datasets  # the dev extra has it: a missing one is a failure, not a skip
import numpy as np
import pytest
import torch

from conftest import MLP
from nngraph.compilers.train import train
from nngraph.compilers.train.data import ArrayData, DataError, load_data
from nngraph.errors import Diagnostics, SourcePos
from nngraph.train_schema import check_train

datasets.disable_progress_bars()
FEATURES = datasets.Features({"a": datasets.Value("float32"),
                              "vec": datasets.Sequence(datasets.Value("float32"), length=3),
                              "label": datasets.ClassLabel(names=["neg", "pos"])})


def cfg(**data):
    return check_train({"data": data}, Diagnostics(), SourcePos("t")).values["data"]


def _rows(n: int, seed: int) -> dict[str, list]:
    """n rows whose label is the sign of ``a`` (a linear split), ``vec`` three more numbers."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n).astype(np.float32)
    return {"a": a.tolist(), "vec": rng.normal(size=(n, 3)).astype(np.float32).tolist(),
            "label": (a > 0).astype(int).tolist()}


def _x(rows: dict[str, list]) -> torch.Tensor:
    """The features as nngraph stacks them: ``a`` then ``vec``'s three numbers, in column order."""
    return torch.cat([torch.tensor(rows["a"])[:, None], torch.tensor(rows["vec"])], dim=1)


@pytest.fixture(scope="module")
def saved_dict(tmp_path_factory):
    """A DatasetDict with train / validation / test splits saved to disk, and its rows."""
    rows = {"train": _rows(160, 0), "validation": _rows(40, 1), "test": _rows(40, 2)}
    path = tmp_path_factory.mktemp("hf") / "signs"
    datasets.DatasetDict({k: datasets.Dataset.from_dict(v, features=FEATURES) for k, v in rows.items()}) \
        .save_to_disk(str(path))
    return path, rows


def test_a_saved_dataset_dict_gives_its_splits_rows_and_class_names(saved_dict, write_spec, make_trainer):
    path, rows = saved_dict
    ds = load_data(cfg(path=str(path)), "classification", path.parent)
    assert ds.meta["classes"] == ["neg", "pos"]
    for split, saved in (("train", "train"), ("val", "validation"), ("test", "test")):
        idx = ds.splits[split]
        assert torch.equal(ds.fields["x"][idx], _x(rows[saved]))  # the saved rows, in their order
        assert ds.fields["y"][idx].tolist() == rows[saved]["label"]
    spec = write_spec(MLP.replace("data: digits", f"data: {{path: '{path}'}}"))
    tr = make_trainer(spec, ["d_in=4", "classes=2"])
    want = {tuple(x.tolist()): y for x, y in zip(_x(rows["train"]), rows["train"]["label"])}
    for m in range(3):  # each training batch row is one saved train row with its own label
        batch = tr.plan.task.train_batch(m, 16, 0, 1)
        got = [want.get(tuple(x.tolist())) for x in batch.inputs["x"]]
        assert got == batch.target["y"].tolist()
    [first] = list(tr.plan.task.eval_batches("val", 40, None))
    assert torch.equal(first.inputs["x"], _x(rows["validation"]))


def test_a_model_trains_a_few_steps_on_a_saved_dataset(saved_dict, write_spec, tmp_path):
    path, _ = saved_dict
    s = train(write_spec(), out=tmp_path / "run", data=str(path), steps=40,
              overrides=["d_in=4", "classes=2", "train.optimizer.lr=0.05"], quiet=True)
    assert s["test"]["accuracy"] > 0.85  # the label is the sign of a: a linear split


def test_a_plain_dataset_is_split_by_the_fractions_and_a_missing_val_split_is_carved(tmp_path):
    rows = _rows(50, 3)
    datasets.Dataset.from_dict(rows, features=FEATURES).save_to_disk(str(tmp_path / "one"))
    ds = load_data(cfg(path=str(tmp_path / "one"), val_fraction=0.2, test_fraction=0.2), "classification", tmp_path)
    assert {k: v.numel() for k, v in ds.splits.items()} == {"train": 30, "val": 10, "test": 10}
    assert torch.equal(ds.fields["x"], _x(rows))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=FEATURES),
                          "unsupervised": datasets.Dataset.from_dict(_rows(5, 4), features=FEATURES)}) \
        .save_to_disk(str(tmp_path / "two"))
    ds = load_data(cfg(path=str(tmp_path / "two"), val_fraction=0.2), "classification", tmp_path)
    assert {k: v.numel() for k, v in ds.splits.items()} == {"train": 40, "val": 10}  # no test_fraction: no test
    assert sorted(torch.cat(list(ds.splits.values())).tolist()) == list(range(50))
    assert ds.meta["splits_left_out"] == ["unsupervised"]


def test_a_bad_row_is_named_by_folder_split_and_row(tmp_path):
    rows = {"train": _rows(10, 0), "validation": _rows(6, 1)}
    rows["validation"]["vec"][4][1] = float("nan")
    datasets.DatasetDict({k: datasets.Dataset.from_dict(v, features=FEATURES) for k, v in rows.items()}) \
        .save_to_disk(str(tmp_path / "d"))
    with pytest.raises(DataError, match=r"d \[validation\]: row 4: column 'vec' holds a value that is not finite"):
        load_data(cfg(path=str(tmp_path / "d")), "classification", tmp_path)
    rows["validation"] = _rows(6, 1)
    rows["validation"]["label"][2] = -1  # ClassLabel's "no label"
    datasets.DatasetDict({k: datasets.Dataset.from_dict(v, features=FEATURES) for k, v in rows.items()}) \
        .save_to_disk(str(tmp_path / "u"))
    with pytest.raises(DataError, match=r"u \[validation\]: row 2: column 'label' is -1 \(no label\)"):
        load_data(cfg(path=str(tmp_path / "u")), "classification", tmp_path)
    ragged = {"a": [1.0, 2.0], "vec": [[1.0, 2.0], [3.0]], "label": [0, 1]}
    datasets.Dataset.from_dict(ragged).save_to_disk(str(tmp_path / "r"))
    with pytest.raises(DataError, match=r"r: row 1: column 'vec' has shape \[1\], row 0 has \[2\]"):
        load_data(cfg(path=str(tmp_path / "r")), "classification", tmp_path)


def test_a_language_model_reads_the_text_column_of_each_split(tmp_path):
    docs = {"train": ["the cat sat", "on the mat"], "validation": ["a cat"], "test": ["the mat"]}
    datasets.DatasetDict({k: datasets.Dataset.from_dict({"id": list(range(len(v))), "text": v})
                          for k, v in docs.items()}).save_to_disk(str(tmp_path / "t"))
    ds = load_data(cfg(path=str(tmp_path / "t")), "language_model", tmp_path)
    decoded = {k: ds.tokenizer.decode(v.tolist()) for k, v in ds.streams.items()}
    assert decoded == {"train": "the cat sat\n\non the mat", "val": "a cat", "test": "the mat"}
    with pytest.raises(DataError, match=r"t \[train\]: no text column 'body'"):
        load_data(cfg(path=str(tmp_path / "t"), text_key="body"), "language_model", tmp_path)


def test_an_image_array_column_keeps_its_shape_and_takes_augmentation(tmp_path):
    images = np.random.default_rng(5).random((6, 3, 4, 4)).astype(np.float32)
    feats = datasets.Features({"image": datasets.Array3D((3, 4, 4), "float32"), "label": datasets.Value("int64")})
    datasets.Dataset.from_dict({"image": images, "label": [0, 1] * 3}, features=feats).save_to_disk(str(tmp_path / "i"))
    ds = load_data(cfg(path=str(tmp_path / "i"), augment={"flip": 1.0}, val_fraction=0.0, test_fraction=0.0),
                   "classification", tmp_path)
    assert torch.equal(ds.fields["x"], torch.from_numpy(images)) and ds.fields["y"].tolist() == [0, 1] * 3
    plain = ArrayData(ds.fields, ds.splits).train_batch(0, 6, 0, 1, seed=0)
    assert torch.equal(ds.train_batch(0, 6, 0, 1, seed=0)["x"], plain["x"].flip(-1))  # flip probability 1
