"""Parquet / Arrow tables, JSONL text and image folders as training data: the values arrive as written, and a bad
row is named by file and row before anything trains."""

from __future__ import annotations

import numpy as np
import pyarrow as pa  # the dev extra has them: a missing one is a failure, not a skip
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from nngraph.compilers.train import train
from nngraph.compilers.train.data import DataError, load_data
from nngraph.errors import Diagnostics, SourcePos
from nngraph.train_schema import check_train


def cfg(**data):
    return check_train({"data": data}, Diagnostics(), SourcePos("t")).values["data"]


def _table(n: int = 20) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"a": rng.normal(size=n), "b": np.arange(n, dtype=np.int32),
                     "kind": np.where(np.arange(n) % 2 == 0, "cat", "dog")})


@pytest.mark.parametrize("suffix, write", [(".parquet", pq.write_table), (".arrow", feather.write_feather)])
def test_a_table_gives_its_numeric_columns_and_named_classes(tmp_path, suffix, write):
    t = _table()
    path = tmp_path / f"t{suffix}"
    write(t, path)
    ds = load_data(cfg(path=str(path), label_column="kind", val_fraction=0.0, test_fraction=0.0),
                   "classification", tmp_path)
    want = np.stack([t.column("a").to_numpy(), t.column("b").to_numpy()], 1).astype(np.float32)
    assert torch.equal(ds.fields["x"], torch.from_numpy(want))
    assert ds.fields["y"].tolist() == [i % 2 for i in range(20)] and ds.meta["classes"] == ["cat", "dog"]


def test_a_null_or_a_non_number_is_named_by_file_row_and_column(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0, None, 4.0], "y": [0, 1, 0, 1]}), path)
    with pytest.raises(DataError, match=r"t\.parquet: row 2: column 'a' is null"):
        load_data(cfg(path=str(path)), "classification", tmp_path)
    pq.write_table(pa.table({"a": [1.0, float("inf"), 3.0], "y": [0, 1, 0]}), path)
    with pytest.raises(DataError, match=r"row 1: column 'a' value inf is not finite"):
        load_data(cfg(path=str(path)), "classification", tmp_path)


def test_jsonl_text_is_the_text_fields_in_order_and_a_bad_line_is_named(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "abc"}\n\n{"text": "cab", "id": 2}\n')
    ds = load_data(cfg(path=str(path), val_fraction=0.0), "language_model", tmp_path)
    tok = ds.tokenizer
    assert tok.decode(ds.streams["train"].tolist()) == "abc\n\ncab"  # documents joined as blank-line blocks
    path.write_text('{"text": "abc"}\n{"body": "x"}\n')
    with pytest.raises(DataError, match=r"c\.jsonl:2: expected an object with a string field 'text'"):
        load_data(cfg(path=str(path)), "language_model", tmp_path)


def _image_folder(root, colors):
    for name, rgb in colors.items():
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (10 + i, 7), rgb).save(root / name / f"{i}.png")


def test_an_image_folder_is_a_class_per_subfolder_resized_to_unit_range(tmp_path):
    root = tmp_path / "imgs"
    _image_folder(root, {"red": (255, 0, 0), "teal": (0, 128, 128)})
    ds = load_data(cfg(path=str(root), image_size=4, val_fraction=0.0, test_fraction=0.0), "classification",
                   tmp_path)
    x, y = ds.fields["x"], ds.fields["y"]
    assert x.shape == (6, 3, 4, 4) and ds.meta["classes"] == ["red", "teal"] and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(x[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))  # a solid colour stays itself when resized
    assert torch.allclose(x[5], torch.tensor([0.0, 128 / 255, 128 / 255]).view(3, 1, 1).expand(3, 4, 4))
    gray = load_data(cfg(path=str(root), image_size=2, image_mode="L"), "classification", tmp_path)
    assert gray.fields["x"].shape == (6, 1, 2, 2)


def test_a_damaged_image_is_named(tmp_path):
    root = tmp_path / "imgs"
    _image_folder(root, {"a": (0, 0, 0), "b": (9, 9, 9)})
    (root / "b" / "1.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"imgs/b/1\.png: not a readable image"):
        load_data(cfg(path=str(root)), "classification", tmp_path)


def test_a_model_trains_on_a_parquet_table(tmp_path, write_spec):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({**{f"f{i}": x[:, i] for i in range(4)}, "y": (x[:, 0] > 0).astype(np.int64)}), path)
    s = train(write_spec(), out=tmp_path / "run", data=str(path), steps=40,
              overrides=["d_in=4", "classes=2", "train.optimizer.lr=0.05"], quiet=True)
    assert s["test"]["accuracy"] > 0.85  # the label is the sign of f0: a linear split


HOOK = '''
import torch


class Signs(torch.utils.data.Dataset):
    def __init__(self, n, seed, bad=None):
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
        self.bad = bad

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i] if i != self.bad else torch.tensor([float("nan")] * 4)
        return x, int(self.x[i, 0] > 0)


def make_dataset():
    return {"train": Signs(160, 0), "val": Signs(40, 1), "test": Signs(40, 2)}


def make_bad():
    return Signs(30, 0, bad=7)
'''


def test_the_dataset_hook_trains_on_the_users_own_dataset(tmp_path, write_spec, monkeypatch):
    (tmp_path / "my_data.py").write_text(HOOK)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from typer.testing import CliRunner

    from nngraph import cli

    res = CliRunner().invoke(cli.app, ["train", str(write_spec()), "--dataset", "my_data:make_dataset", "--out",
                                       str(tmp_path / "run"), "--steps", "40", "--set", "d_in=4",
                                       "--set", "classes=2", "--set", "train.optimizer.lr=0.05"])
    assert res.exit_code == 0, res.output
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 0.85  # the label is the sign of x0
    res = CliRunner().invoke(cli.app, ["train", str(write_spec()), "--dataset", "my_data:make_bad", "--out",
                                       str(tmp_path / "bad"), "--set", "d_in=4"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "--dataset 'my_data:make_bad': train item 7: field 'x' holds NaN or infinity" in res.output
    res = CliRunner().invoke(cli.app, ["train", str(write_spec()), "--dataset", "my_data", "--out",
                                       str(tmp_path / "bad2")])
    assert res.exit_code == 1 and "expected MODULE:FUNCTION" in res.output
