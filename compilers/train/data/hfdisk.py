"""Hugging Face ``datasets`` saved to disk (``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` folders).

Columns map as a Parquet table's do (:func:`.tables.table_columns`): the label column (``train.data.label_column``,
default the last) is ``y`` -- a ``ClassLabel`` keeps its names, strings become sorted class names shared by all
splits -- and every other column is a feature of ``x`` (numbers, or lists of one shape: one such column keeps its
shape). Language-model tasks read the ``text_key`` column as documents instead, as JSONL lines are.

A ``DatasetDict``'s splits are the run's: ``train``; ``validation`` (or ``valid``, ``val``, ``dev``) -> val;
``test``. A missing val split is carved from train by ``val_fraction`` (seeded by ``split_seed``), a missing test
split only when ``test_fraction`` is given. Other splits (e.g. ``unsupervised``) are left out and listed in the
data's meta. A plain ``Dataset`` is split by the fractions, as a table file is. A bad row is a
:class:`DataError` naming the folder, the split and the row (0-based).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import DataError, split_indices
from .tables import class_ids, label_index, table_columns

#: a DatasetDict's split names -> the run's
SPLITS = {"train": "train", "validation": "val", "valid": "val", "val": "val", "dev": "val", "test": "test"}


def is_saved_dataset(path: Path) -> bool:
    """A folder ``save_to_disk`` wrote: ``dataset_dict.json`` (a DatasetDict) or ``state.json`` (a Dataset)."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def load_saved(path: Path) -> tuple[dict[str, Any], list[str]]:
    """({run split: (saved split name, datasets.Dataset)}, left-out split names); a plain Dataset is
    ``{"all": ("", ds)}``."""
    try:
        import datasets
    except ImportError as exc:
        raise DataError(f"{path}: a saved Hugging Face dataset needs the datasets extra: "
                        f"pip install 'nngraph[datasets]' ({exc})") from None
    try:
        saved = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds for a damaged folder
        raise DataError(f"{path}: not a readable save_to_disk folder ({exc})") from None
    if isinstance(saved, datasets.Dataset):
        return {"all": ("", saved)}, []
    parts = {SPLITS[k]: (k, v) for k, v in saved.items() if k in SPLITS}
    if "train" not in parts:
        raise DataError(f"{path}: the DatasetDict has no 'train' split (splits: {', '.join(saved)})")
    if len([k for k in saved if k in SPLITS]) != len(parts):
        raise DataError(f"{path}: the DatasetDict has two validation splits ({', '.join(saved)})")
    return parts, [k for k in saved if k not in SPLITS]


def _where(path: Path, name: str) -> str:
    """The folder, and the split as saved (``FOLDER [validation]``) for a DatasetDict's."""
    return f"{path} [{name}]" if name else str(path)


def _labels(ds: Any, y: np.ndarray, column: str, where: str) -> list[str] | None:
    """A ClassLabel column's names; its -1 (no label) is refused at its row."""
    import datasets

    feature = ds.features.get(column)
    if not isinstance(feature, datasets.ClassLabel):
        return None
    unlabelled = np.flatnonzero(y < 0)
    if unlabelled.size:
        raise DataError(f"{where}: row {int(unlabelled[0])}: column '{column}' is {int(y[unlabelled[0]])} "
                        "(no label)")
    return list(feature.names)


def table(path: Path, label_column: str | int | None) -> tuple[np.ndarray, np.ndarray, list[str] | None,
                                                                 dict[str, tuple[int, int]], list[str]]:
    """(x, y, class names or None, {run split: (first row, rows)}, left-out splits): the splits stacked in order."""
    parts, left_out = load_saved(path)
    xs, ys, names, spans, start = [], [], None, {}, 0
    for split, (name, ds) in parts.items():
        where = _where(path, name)
        x, y = table_columns(ds.with_format("arrow")[:], where, label_column)
        column = ds.column_names[label_index(ds.column_names, label_column, where)]
        names = _labels(ds, y, column, where) or names
        xs.append(x)
        ys.append(y)
        spans[split] = (start, len(x))
        start += len(x)
    if len({x.shape[1:] for x in xs}) > 1:
        raise DataError(f"{path}: the splits' features differ in shape ({', '.join(str(list(x.shape[1:])) for x in xs)})")
    ys, classes = class_ids(ys)
    return np.concatenate(xs), np.concatenate(ys), classes or names, spans, left_out


def splits(spans: dict[str, tuple[int, int]], val: float, test: float | None, seed: int) -> dict[str, torch.Tensor]:
    """Row indices per split: a plain Dataset's by the fractions (test 0.2 by default, as a table's); a
    DatasetDict's as saved, a missing val (and, when ``test`` is given, test) carved from train."""
    if "all" in spans:
        return split_indices(spans["all"][1], val, 0.2 if test is None else test, seed)
    out = {k: torch.arange(a, a + n) for k, (a, n) in spans.items()}
    carve_val = 0.0 if "val" in out else val
    carve_test = 0.0 if "test" in out or test is None else test
    if carve_val or carve_test:
        train = out.pop("train")
        parts = split_indices(len(train), carve_val, carve_test, seed)
        out.update({k: train[v] for k, v in parts.items()})
    return out


def documents(path: Path, key: str) -> dict[str, list[str]]:
    """{run split: the ``key`` column's strings} for a language-model task."""
    parts, _ = load_saved(path)
    out = {}
    for split, (name, ds) in parts.items():
        if key not in ds.column_names:
            raise DataError(f"{_where(path, name)}: no text column '{key}' (columns: {', '.join(ds.column_names)}); "
                            "set train.data.text_key")
        docs = ds[key]
        for i, d in enumerate(docs):
            if not isinstance(d, str):
                raise DataError(f"{_where(path, name)}: row {i}: column '{key}' is {type(d).__name__}, not text")
        out[split] = docs
    return out
