"""User data files: .npz/.npy arrays, .csv tables, plain text, graphs as JSON or edge lists.

Every problem is a :class:`DataError` naming the file and, where it applies,
the row (1-based, as an editor shows it) and column.
"""

from __future__ import annotations

import csv
import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from nngraph import readers

from .base import DataError

SUFFIX_FORMATS = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".tsv": "csv", ".txt": "text", ".text": "text",
                  ".md": "text", ".json": "graph_json", ".edges": "edgelist", ".edgelist": "edgelist",
                  ".jsonl": "jsonl", ".parquet": "parquet", ".arrow": "arrow", ".feather": "arrow"}
MAX_ROWS_REPORTED = 1


def detect_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path.is_dir():
        from .hfdisk import is_saved_dataset

        return "hf_dataset" if is_saved_dataset(path) else "image_folder"
    if path.suffix.lower() in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[path.suffix.lower()]
    raise DataError(f"{path}: cannot tell the format from the suffix '{path.suffix}'; "
                    f"set train.data.format ({', '.join(sorted(set(SUFFIX_FORMATS.values())))}, image_folder, hf_dataset)")


def _finite_rows(arr: np.ndarray, path: Path, what: str) -> None:
    if arr.dtype.kind != "f":
        return
    bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1) if arr.ndim else np.array([not np.isfinite(arr)])
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: {what} row {row} holds NaN or infinity")


@contextmanager
def _refusals() -> Iterator[None]:
    """A data file the readers refuse (not a regular file, too big, a forged header) is a DataError."""
    try:
        yield
    except readers.FileRefused as exc:
        raise DataError(str(exc)) from None


def require_file(path: Path) -> None:
    """DataError unless ``path`` is a regular file (a FIFO, a device or a folder is named as such)."""
    with _refusals():
        readers.check_regular(path, None, "data file")


def _read_text_bytes(path: Path) -> bytes:
    """The bytes of a text data file, at most the text share of memory (parsing multiplies it)."""
    with _refusals():
        return readers.read_bytes(path, readers.memory_cap(readers.TEXT_SHARE), "data file")


def load_arrays(path: Path, fmt: str, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(features, targets or None) from .npz (two named arrays) or .npy (one array; last column = target)."""
    cap = readers.memory_cap(readers.BINARY_SHARE)
    if fmt == "npz":
        with _refusals():
            names = readers.npz_names(path, "data file")
            if x_key not in names:
                raise DataError(f"{path}: no array '{x_key}' (arrays: {', '.join(names) or 'none'}); "
                                "set train.data.x_key")
            arrays = readers.npz_file(path, cap, "data file", [x_key, y_key])
        x, y = arrays[x_key], arrays.get(y_key)
    else:
        with _refusals():
            arr = readers.npy_file(path, cap, "data file")
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise DataError(f"{path}: expected a 2-D array [rows, features + target], got shape {list(arr.shape)}")
        x, y = arr[:, :-1], arr[:, -1]
    if x.dtype.kind not in "fiub":
        raise DataError(f"{path}: array '{x_key}' has dtype {x.dtype}; expected numbers")
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: '{x_key}' has {len(x)} rows but '{y_key}' has {len(y)}")
    _finite_rows(x, path, "feature")
    if y is not None:
        _finite_rows(y, path, "target")
    return x, y


def load_csv(path: Path, label_column: str | int | None) -> tuple[np.ndarray, np.ndarray, list[str] | None, list[int]]:
    """(features float32, targets, class names or None, the file's line of each row: 1-based, the header counted).
    Non-numeric targets become class ids."""
    try:
        text = _read_text_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(text.splitlines(), delimiter=delim)
    try:
        rows = list(reader)
    except csv.Error as exc:  # e.g. a field over csv's 131072-character limit: not a table of numbers
        raise DataError(f"{path}:{reader.line_num}: {exc}: a data CSV holds numbers and class names") from None
    rows = [(i + 1, r) for i, r in enumerate(rows) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path}: no rows")
    header = None
    first = rows[0][1]
    if any(not _is_number(c) for c in first):
        header = [c.strip() for c in first]
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path}: a header but no data rows")
    width = len(rows[0][1])
    if isinstance(label_column, str):
        if header is None or label_column not in header:
            raise DataError(f"{path}: no column named '{label_column}' (columns: {', '.join(header or []) or 'no header'})")
        label = header.index(label_column)
    else:
        label = width - 1 if label_column is None else label_column
        if not -width <= label < width:
            raise DataError(f"{path}: label column {label} is out of range for {width} columns")
        label %= width
    xs, ys = [], []
    for lineno, r in rows:
        if len(r) != width:
            raise DataError(f"{path}:{lineno}: expected {width} columns, got {len(r)}")
        feats = []
        for j, cell in enumerate(r):
            if j == label:
                continue
            try:
                v = float(cell)
            except ValueError:
                name = header[j] if header else str(j)
                raise DataError(f"{path}:{lineno}: column '{name}' value {cell.strip()!r} is not a number") from None
            if not math.isfinite(v):
                raise DataError(f"{path}:{lineno}: column {j} value {cell.strip()!r} is not finite")
            feats.append(v)
        xs.append(feats)
        ys.append(r[label].strip())
    names = None
    if all(_is_number(y) for y in ys):
        yv = np.array([float(y) for y in ys])
        if not np.isfinite(yv).all():
            raise DataError(f"{path}:{rows[int(np.argmax(~np.isfinite(yv)))][0]}: the label is not finite")
        y_arr = yv.astype(np.int64) if np.all(yv == np.round(yv)) else yv.astype(np.float32)
    else:
        names = sorted(set(ys))
        y_arr = np.array([names.index(y) for y in ys], dtype=np.int64)
    return np.array(xs, dtype=np.float32), y_arr, names, [lineno for lineno, _ in rows]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def load_text(path: Path) -> str:
    raw = _read_text_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from None
    if not text:
        raise DataError(f"{path}: the file is empty")
    return text


def load_jsonl(path: Path, key: str) -> list[str]:
    """One document per non-empty line of a JSON Lines file: the string under ``key`` of each object."""
    docs = []
    for line_no, line in enumerate(load_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line_no}:{exc.colno}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(key), str):
            raise DataError(f"{path}:{line_no}: expected an object with a string field '{key}' "
                            "(set train.data.text_key)")
        docs.append(obj[key])
    return docs


def _tensor(value: Any, path: Path, what: str, dtype: torch.dtype) -> torch.Tensor:
    try:
        t = torch.tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{path}: '{what}' is not a rectangular array of numbers ({exc})") from None
    if t.is_floating_point() and not torch.isfinite(t).all():
        row = int((~torch.isfinite(t.reshape(t.shape[0], -1))).any(1).nonzero()[0])
        raise DataError(f"{path}: '{what}' row {row} holds NaN or infinity")
    return t


def _edges(value: Any, n: int, path: Path, where: str) -> torch.Tensor:
    if not isinstance(value, list):
        raise DataError(f"{path}: {where}'edges' must be a list of [source, target] pairs")
    for i, e in enumerate(value):
        if not (isinstance(e, list) and len(e) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in e)):
            raise DataError(f"{path}: {where}edge {i} must be [source, target] node ids, got {e!r}")
        if not (0 <= e[0] < n and 0 <= e[1] < n):
            raise DataError(f"{path}: {where}edge {i} {e} names a node outside 0..{n - 1}")
    t = torch.tensor(value, dtype=torch.long).reshape(-1, 2).t()
    return torch.cat([t, t.flip(0)], dim=1) if t.numel() else t  # both directions


def _graph(obj: Any, path: Path, where: str = "") -> tuple[torch.Tensor, torch.Tensor, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {where}a graph must be an object with 'x' (or 'num_nodes'), 'edges' and 'y'")
    if "x" in obj:
        x = _tensor(obj["x"], path, f"{where}x", torch.float32)
        if x.ndim != 2:
            raise DataError(f"{path}: {where}'x' must be [nodes, features], got shape {list(x.shape)}")
    elif isinstance(obj.get("num_nodes"), int) and obj["num_nodes"] > 0:
        x = torch.eye(obj["num_nodes"])
    else:
        raise DataError(f"{path}: {where}needs 'x' (node features) or 'num_nodes' (identity features)")
    return x, _edges(obj.get("edges", []), x.shape[0], path, where), obj.get("y")


def load_graph_json(path: Path) -> dict[str, Any]:
    """``{"x"|"num_nodes", "edges", "y", optional "train"/"val"/"test" node lists}`` (node classification)
    or ``{"graphs": [{"x", "edges", "y": int}, ...]}`` (graph classification)."""
    try:
        obj = json.loads(load_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    if isinstance(obj, dict) and "graphs" in obj:
        graphs = []
        for i, g in enumerate(obj["graphs"]):
            x, e, y = _graph(g, path, f"graph {i}: ")
            if not isinstance(y, int) or isinstance(y, bool) or y < 0:
                raise DataError(f"{path}: graph {i}: 'y' must be a class id (an integer >= 0), got {y!r}")
            graphs.append((x, e, y))
        if not graphs:
            raise DataError(f"{path}: 'graphs' is empty")
        return {"graphs": graphs}
    x, e, y = _graph(obj, path)
    if y is None:
        raise DataError(f"{path}: node classification needs 'y' (one class id per node, -1 = unlabelled)")
    yt = _tensor(y, path, "y", torch.long)
    if yt.shape != (x.shape[0],):
        raise DataError(f"{path}: 'y' has {yt.numel()} labels for {x.shape[0]} nodes")
    masks = {}
    for split in ("train", "val", "test"):
        if split in obj:
            ids = obj[split]
            if not isinstance(ids, list) or not all(isinstance(i, int) and 0 <= i < x.shape[0] for i in ids):
                raise DataError(f"{path}: '{split}' must list node ids in 0..{x.shape[0] - 1}")
            m = torch.zeros(x.shape[0], dtype=torch.bool)
            m[ids] = True
            masks[split] = m
    return {"x": x, "edge_index": e, "y": yt, "masks": masks}


def load_edgelist(path: Path) -> dict[str, Any]:
    """Rows ``u v`` (node ids or names; ``#`` comments); labels from ``<file>.labels`` rows ``node class``."""
    ids: dict[str, int] = {}
    edges = []
    for lineno, line in enumerate(load_text(path).splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) not in (2, 3):
            raise DataError(f"{path}:{lineno}: expected 'source target' (and an optional weight), got {line!r}")
        u, v = (ids.setdefault(p, len(ids)) for p in parts[:2])
        edges.append([u, v])
    if not ids:
        raise DataError(f"{path}: no edges")
    n = len(ids)
    labels_path = path.with_name(path.name + ".labels")
    if not labels_path.is_file():
        labels_path = path.with_suffix(".labels")
    y = torch.full((n,), -1, dtype=torch.long)
    if labels_path.is_file():
        classes: dict[str, int] = {}
        for lineno, line in enumerate(load_text(labels_path).splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise DataError(f"{labels_path}:{lineno}: expected 'node class', got {line!r}")
            if parts[0] not in ids:
                raise DataError(f"{labels_path}:{lineno}: node {parts[0]!r} is not in {path.name}")
            y[ids[parts[0]]] = classes.setdefault(parts[1], len(classes)) if not parts[1].lstrip("-").isdigit() \
                else int(parts[1])
    else:
        raise DataError(f"{path}: node labels not found: write '{path.name}.labels' with rows 'node class'")
    t = torch.tensor(edges, dtype=torch.long).t()
    return {"x": torch.eye(n), "edge_index": torch.cat([t, t.flip(0)], dim=1), "y": y, "masks": {}}
