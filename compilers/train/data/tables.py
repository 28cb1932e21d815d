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
    x, y = table_columns(_table(path, fmt), str(path), label_column)
    [y], classes = class_ids([y])
    return x, y, classes


def table_columns(table, where: str, label_column: str | int | None) -> tuple[np.ndarray, np.ndarray]:
    """(features float32, raw label values) of a pyarrow table: every column but the label (default: the last)
    is a feature. A column of numbers is one feature; with one feature column of equal-shape lists (an image, a
    sequence) x keeps that shape, with several each list is flattened and the columns are concatenated.
    A problem names ``where`` and the row (0-based)."""
    names = table.column_names
    if table.num_rows < 1 or len(names) < 2:
        raise DataError(f"{where}: needs a label column and at least one feature column with rows "
                        f"(got {len(names)} columns, {table.num_rows} rows)")
    label = label_index(names, label_column, where)
    feats = []
    for j, name in enumerate(names):
        col = table.column(j)
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{where}: row {row}: column '{name}' is null")
        if j != label:
            feats.append(_feature(col, where, name))
    y = np.array(table.column(label).to_numpy(zero_copy_only=False))  # a writable copy for torch
    if len(feats) == 1:
        return feats[0], y
    return np.concatenate([f.reshape(len(f), -1) for f in feats], axis=1), y


def label_index(names: list[str], label_column: str | int | None, where: str) -> int:
    """The label column's index: by name, by index (negative from the end), default the last."""
    if isinstance(label_column, str):
        if label_column not in names:
            raise DataError(f"{where}: no column named '{label_column}' (columns: {', '.join(names)})")
        return names.index(label_column)
    return len(names) - 1 if label_column is None else label_column % len(names)


def _feature(col, where: str, name: str) -> np.ndarray:
    """One feature column as float32 [rows, *shape]: numbers, or (nested) lists of numbers of one shape."""
    import pyarrow as pa

    if isinstance(col.type, pa.ExtensionType):  # e.g. datasets' Array2D/3D: nested lists underneath
        col = pa.chunked_array([c.storage for c in col.chunks], type=col.type.storage_type)
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        rows = []
        for i, v in enumerate(col.to_pylist()):
            try:
                rows.append(np.asarray(v, dtype=np.float32))
            except (TypeError, ValueError):  # a ragged nesting, a null or a string inside
                raise DataError(f"{where}: row {i}: column '{name}' is not a regular array of numbers") from None
            if rows[i].shape != rows[0].shape:
                raise DataError(f"{where}: row {i}: column '{name}' has shape {list(rows[i].shape)}, row 0 has "
                                f"{list(rows[0].shape)}")
        values = np.stack(rows)
    else:
        values = col.to_numpy(zero_copy_only=False)
        if values.dtype.kind not in "fiub":
            raise DataError(f"{where}: row 0: column '{name}' holds {col.type}, not numbers")
        values = values.astype(np.float32)
    flat = values.reshape(len(values), -1)
    bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
    if bad.size:
        what = f"value {values[bad[0]]}" if values.ndim == 1 else "holds a value that"
        raise DataError(f"{where}: row {int(bad[0])}: column '{name}' {what} is not finite")
    return values


def class_ids(ys: list[np.ndarray]) -> tuple[list[np.ndarray], list[str] | None]:
    """Label arrays as they are when numbers; names -> ids into the sorted names of all of them together (so the
    splits of one dataset agree), with the names."""
    if all(y.dtype.kind in "fiub" for y in ys):
        return ys, None
    classes = sorted({str(v) for y in ys for v in y})
    index = {c: i for i, c in enumerate(classes)}
    return [np.array([index[str(v)] for v in y], dtype=np.int64) for y in ys], classes


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
