"""Loading the configured dataset: a built-in one or a user file (see :mod:`.base` for batching)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import builtin, files, hfdisk, tables
from .augment import Augment
from .base import (ArrayData, DataError, GraphSetData, NodeGraphData, TokenData, split_indices, split_stream,
                   step_generator)
from .packing import PackedData, packed_data, split_documents
from .text import BPETokenizer, CharTokenizer, make_tokenizer

__all__ = ["ArrayData", "BPETokenizer", "CharTokenizer", "DataError", "GraphSetData", "NodeGraphData", "PackedData",
           "TokenData",
           "augmented", "default_builtin", "load_data", "step_generator"]

Dataset = ArrayData | TokenData | PackedData | NodeGraphData | GraphSetData
TOKEN_TASKS = ("language_model", "masked_lm")

_TASK_DEFAULT = {"classification": "digits", "regression": None, "language_model": "text", "masked_lm": "text",
                 "diffusion": "digits", "vae": "digits", "node_classification": "karate",
                 "graph_classification": None}


def default_builtin(task: str) -> str | None:
    """The built-in dataset a task trains on when the config names none."""
    return _TASK_DEFAULT.get(task)


def load_data(data: dict[str, Any], task: str, base_dir: Path) -> Dataset:
    """The dataset ``data`` (the checked ``train.data`` section) describes; paths are relative to ``base_dir``."""
    val, seed = data["val_fraction"], data["split_seed"]
    name = data["builtin"] or (None if data["path"] else default_builtin(task))
    if name is not None:
        ds = _builtin(name, data, task, val, seed)
        return augmented(ds, data, Path(name)) if data["augment"] else ds
    if not data["path"]:
        raise DataError(f"task '{task}' has no built-in dataset: give train.data.path or --data FILE")
    path = Path(data["path"]).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_dir():
        files.require_file(path)
    fmt = files.detect_format(path, data["format"])
    ds = _load_file(path, fmt, data, task, val, seed)
    return augmented(ds, data, path) if data["augment"] else ds


def augmented(ds: Dataset, data: dict[str, Any], path: Path | str) -> ArrayData:
    """``ds`` (from ``path``: a file, a built-in or a --dataset hook) with ``data.augment`` on its training
    batches: images [N, C, H, W] only."""
    x = ds.fields.get("x") if isinstance(ds, ArrayData) else None
    if x is None or x.ndim != 4:
        shape = list(x.shape[1:]) if x is not None else f"{type(ds).__name__} without an 'x' field"
        raise DataError(f"{path}: data.augment transforms images [C, H, W] (an image folder, a saved dataset's image "
                        f"arrays, a --dataset hook's x); this data is {shape}")
    ds.augment = Augment.of(data["augment"])
    return ds


def _load_file(path: Path, fmt: str, data: dict[str, Any], task: str, val: float, seed: int) -> Dataset:
    test = data["test_fraction"]
    if fmt in ("parquet", "arrow"):
        x, y, names = tables.load_table(path, fmt, data["label_column"])
        return _arrays(x, _targets(y, task, path), names, data, val, test, seed, path)
    if fmt == "hf_dataset":
        if task in TOKEN_TASKS:
            return _hf_tokens(path, data, val, test)
        x, y, names, spans, left_out = hfdisk.table(path, data["label_column"])
        ds = _arrays(x, _targets(y, task, path), names, data, val, test, seed, path,
                     hfdisk.splits(spans, val, test, seed))
        ds.meta.update({"splits_left_out": left_out} if left_out else {})
        return ds
    if fmt == "image_folder":
        x, y, names = tables.load_image_folder(path, data["image_size"], data["image_mode"])
        return _arrays(x, y, names, data, val, test, seed, path)
    if fmt in ("npz", "npy"):
        x, y = files.load_arrays(path, fmt, data["x_key"], data["y_key"])
        return _arrays(x, _targets(y, task, path), None, data, val, test, seed, path)
    if fmt == "csv":
        x, y, names, lines = files.load_csv(path, data["label_column"])
        return _arrays(x, _targets(y, task, path, lines), names, data, val, test, seed, path)
    if fmt == "text":
        return _tokens(files.load_text(path), data, val, test or 0.0, str(path))
    if fmt == "jsonl":
        return _tokens(files.load_jsonl(path, data["text_key"]), data, val, test or 0.0, str(path))
    if fmt == "graph_json":
        blob = files.load_graph_json(path)
        if "graphs" in blob:
            graphs = blob["graphs"]
            return GraphSetData(graphs, split_indices(len(graphs), val, 0.2 if test is None else test, seed),
                                1 + max(g[2] for g in graphs), {"name": path.name})
        return _node_graph(blob, data, path)
    return _node_graph(files.load_edgelist(path), data, path)


def _builtin(name: str, data: dict[str, Any], task: str, val: float, seed: int) -> Dataset:
    test = data["test_fraction"]
    if name == "digits":
        return _normalized(builtin.digits(val, 0.2 if test is None else test, seed), data)
    if name == "karate":
        return builtin.karate(data["labelled_per_class"])
    if name in ("text", "shakespeare"):
        path = builtin.CORPUS if name == "text" else builtin.SHAKESPEARE
        return _tokens(builtin.corpus_text(path), data, val, test or 0.0, str(path))
    return builtin.synthetic(name, data["num_samples"], data["length"], data["symbols"], val,
                             0.1 if test is None else test, seed)


def _tokens(text: str | list[str], data: dict[str, Any], val: float, test: float,
            source: str) -> TokenData | PackedData:
    """Text (or JSONL documents) -> a token stream, or packed documents when ``data.pack`` is on."""
    docs = text if isinstance(text, list) else None
    text = "\n\n".join(docs) if docs is not None else text
    tok = make_tokenizer(data["tokenizer"], text, data["vocab_size"])
    if data["pack"]:
        return packed_data(split_documents(text) if docs is None else docs, tok, data["seq_len"], val, test,
                           data["split_seed"], source)
    ids = tok.encode(text, source)
    streams = split_stream(ids, val, test)
    return TokenData(streams, tok.vocab_size, tok, {"name": Path(source).name, "tokens": int(ids.numel())})


def _hf_tokens(path: Path, data: dict[str, Any], val: float, test: float | None) -> TokenData | PackedData:
    """A saved dataset's ``text_key`` column as documents: a Dataset's as JSONL lines are; a DatasetDict's splits
    each their own stream (a missing val split cut from train's), one tokenizer made from all their text."""
    docs = hfdisk.documents(path, data["text_key"])
    if "all" in docs:
        return _tokens(docs["all"], data, val, test or 0.0, str(path))
    if data["pack"]:
        raise DataError(f"{path}: data.pack packs one Dataset's documents; this folder is a DatasetDict "
                        f"({', '.join(docs)}): save its splits as one Dataset or leave pack off")
    text = {k: "\n\n".join(v) for k, v in docs.items()}
    tok = make_tokenizer(data["tokenizer"], "\n\n".join(text.values()), data["vocab_size"])
    streams = {k: tok.encode(t, f"{path} [{k}]") for k, t in text.items()}
    if "val" not in streams and val:
        streams.update(split_stream(streams.pop("train"), val, 0.0))
    total = sum(int(s.numel()) for s in streams.values())
    return TokenData(streams, tok.vocab_size, tok, {"name": path.name, "tokens": total})


def _targets(y: np.ndarray | None, task: str, path: Path, lines: list[int] | None = None) -> np.ndarray | None:
    """Classification targets are class ids: whole numbers become int64, a fraction is refused where it is -- the
    file's line (``lines``: a CSV's line of each row), else the array's row (it would reach the loss as a float)."""
    if y is None or task != "classification" or y.dtype.kind != "f":
        return y
    fractional = np.flatnonzero(y != np.round(y))
    if fractional.size:
        row = int(fractional[0])
        where = f"{path}:{lines[row]}: target" if lines is not None else f"{path}: target row {row}"
        raise DataError(f"{where} is {y[row]:g}, not a class id; task 'classification' needs "
                        "whole-number class ids or class names (fractional targets: task regression)")
    return y.astype(np.int64)


def _arrays(x: np.ndarray, y: np.ndarray | None, names: list[str] | None, data: dict[str, Any], val: float,
            test: float | None, seed: int, path: Path, splits: dict[str, torch.Tensor] | None = None) -> ArrayData:
    """Rows as an ArrayData; ``splits`` as given (a DatasetDict's) or drawn by the fractions (test 0.2 unless
    given)."""
    if len(x) < 2:
        raise DataError(f"{path}: needs at least 2 examples, got {len(x)}")
    fields = {"x": torch.from_numpy(np.ascontiguousarray(x)).float()}
    meta: dict[str, Any] = {"name": path.name, "features": int(np.prod(x.shape[1:]))}
    if y is not None:
        yt = torch.from_numpy(np.ascontiguousarray(y))
        if yt.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            yt = yt.long()
            if int(yt.min()) < 0:
                row = int(torch.argmin(yt))
                raise DataError(f"{path}: target row {row} is {int(yt[row])}; class ids must be >= 0")
            meta["num_classes"] = int(yt.max()) + 1
        else:
            yt = yt.float()
        fields["y"] = yt
    if names:
        meta["classes"] = names
    if splits is None:
        splits = split_indices(len(x), val, 0.2 if test is None else test, seed)
    return _normalized(ArrayData(fields, splits, meta), data)


def _normalized(ds: ArrayData, data: dict[str, Any]) -> ArrayData:
    if data["normalize"]:
        x = ds.fields["x"]
        train = x[ds.splits["train"]]
        mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True).clamp_min(1e-6)
        ds.fields["x"] = (x - mean) / std
    return ds


def _node_graph(blob: dict[str, Any], data: dict[str, Any], path: Path) -> NodeGraphData:
    y, masks = blob["y"], dict(blob["masks"])
    labelled = y >= 0
    if not bool(labelled.any()):
        raise DataError(f"{path}: no node has a label")
    classes = int(y.max()) + 1
    if "train" not in masks:
        train = torch.zeros_like(labelled)
        for c in range(classes):
            ids = (y == c).nonzero().flatten()[:data["labelled_per_class"]]
            train[ids] = True
        masks["train"] = train
    if "test" not in masks:
        masks["test"] = labelled & ~masks["train"] & ~masks.get("val", torch.zeros_like(labelled))
    for k, m in masks.items():
        if bool((m & ~labelled).any()):
            node = int((m & ~labelled).nonzero()[0])
            raise DataError(f"{path}: node {node} is in the '{k}' split but has no label")
    return NodeGraphData(blob["x"], blob["edge_index"], y.clamp_min(0), masks, classes, {"name": path.name})
