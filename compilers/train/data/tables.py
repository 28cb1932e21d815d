"""More data users already have: Parquet / Arrow tables (pyarrow), JSONL text and image folders (Pillow).

Like :mod:`.files`, every problem is a :class:`DataError` naming the file and the row (0-based for a table, as
pyarrow counts; the 1-based line for JSONL, as an editor shows it), so nothing trains on a bad row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _table(path: Path, fmt: str):  # -> pyarrow.Table
    try:
        import pyarrow.feather as feather
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(f"{path}: reading {fmt} needs pyarrow: pip install 'nngraph[data]' ({exc})") from None
    try:
        return pq.read_table(path) if fmt == "parquet" else feather.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a damaged file are of many kinds
        raise DataError(f"{path}: not a readable {fmt} file ({exc})") from None


def load_table(path: Path, fmt: str, label_column: str | int | None) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """(features float32 [rows, columns], targets, class names or None) from a Parquet or Arrow (Feather) table:
    numeric feature columns; the label column (default: the last) numbers or class names."""
    table = _table(path, fmt)
    names = table.column_names
    if table.num_rows < 1 or len(names) < 2:
        raise DataError(f"{path}: needs a label column and at least one feature column with rows "
                        f"(got {len(names)} columns, {table.num_rows} rows)")
    if isinstance(label_column, str):
        if label_column not in names:
            raise DataError(f"{path}: no column named '{label_column}' (columns: {', '.join(names)})")
        label = names.index(label_column)
    else:
        label = len(names) - 1 if label_column is None else label_column % len(names)
    feats = []
    for j, name in enumerate(names):
        col = table.column(j)
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{path}: row {row}: column '{name}' is null")
        if j == label:
            continue
        values = col.to_numpy(zero_copy_only=False)
        if values.dtype.kind not in "fiub":
            raise DataError(f"{path}: row 0: column '{name}' holds {col.type}, not numbers")
        values = values.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise DataError(f"{path}: row {int(bad[0])}: column '{name}' value {values[bad[0]]} is not finite")
        feats.append(values)
    y = np.array(table.column(label).to_numpy(zero_copy_only=False))  # a writable copy for torch
    classes = None
    if y.dtype.kind not in "fiub":
        classes = sorted({str(v) for v in y})
        y = np.array([classes.index(str(v)) for v in y], dtype=np.int64)
    return np.stack(feats, axis=1), y, classes


def load_image_folder(root: Path, size: int, mode: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images float32 [N, C, size, size] in [0, 1], class ids, class names): one subfolder per class (names
    sorted), every image converted to ``mode`` (RGB: C=3, L: C=1) and resized to size x size (bilinear)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise DataError(f"{root}: image folders need Pillow: pip install 'nngraph[data]' ({exc})") from None
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: an image folder needs a subfolder per class, at least 2 (found {len(classes)})")
    xs, ys = [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{root / name}: class '{name}' has no images ({', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
            except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a damaged file
                raise DataError(f"{f}: not a readable image ({exc})") from None
            a = np.asarray(im, dtype=np.float32) / 255.0
            xs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
            ys.append(c)
    return np.stack(xs), np.array(ys, dtype=np.int64), classes
