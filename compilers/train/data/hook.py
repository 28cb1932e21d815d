"""``nngraph train SPEC --dataset my_module:make_dataset``: the user's own ``torch.utils.data.Dataset``.

The hook is named on the command line only (a spec never names code to run). ``make_dataset()`` (no arguments)
returns a map-style Dataset, split by ``train.data.val_fraction`` / ``test_fraction`` / ``split_seed`` like a
file, or a dict ``{"train": ds, "val": ds, "test": ds}`` (val and test optional). Each item is ``(x, y)`` or a
dict of named fields (``{"x": ..., "y": ...}``; names as the graph's inputs bind them). Every item is read once
into tensors, so batching, splits and resume are those of any table; an item that is not numbers, holds NaN or
infinity, or differs in shape from item 0 is a :class:`DataError` naming the hook and the item.
The module is imported from the current folder or ``sys.path``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import torch

from .base import ArrayData, DataError, split_indices


def _function(ref: str) -> Any:
    module, sep, name = ref.partition(":")
    if not sep or not module or not name:
        raise DataError(f"--dataset '{ref}': expected MODULE:FUNCTION, e.g. my_module:make_dataset")
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # `nngraph` the console script does not have the current folder
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise DataError(f"--dataset '{ref}': cannot import '{module}' ({exc})") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise DataError(f"--dataset '{ref}': '{module}' has no function '{name}'")
    return fn


def _fields(item: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(item, dict):
        pairs = item.items()
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        pairs = (("x", item[0]), ("y", item[1]))
    else:
        raise DataError(f"{where}: expected (x, y) or a dict of fields, got {type(item).__name__}")
    out = {}
    for k, v in pairs:
        try:
            t = torch.as_tensor(v)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"{where}: field '{k}' is not numbers ({exc})") from None
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise DataError(f"{where}: field '{k}' holds NaN or infinity")
        out[str(k)] = t
    return out


def _read(ds: Any, ref: str, split: str) -> dict[str, torch.Tensor]:
    """Every item of ``ds`` stacked per field."""
    try:
        n = len(ds)
    except TypeError:
        raise DataError(f"--dataset '{ref}': the {split} dataset has no len(); give a map-style Dataset") from None
    if n < 1:
        raise DataError(f"--dataset '{ref}': the {split} dataset is empty")
    rows = [_fields(ds[i], f"--dataset '{ref}': {split} item {i}") for i in range(n)]
    first = rows[0]
    for i, r in enumerate(rows):
        for k, t in first.items():
            if k not in r or r[k].shape != t.shape:
                got = "no such field" if k not in r else f"shape {list(r[k].shape)}"
                raise DataError(f"--dataset '{ref}': {split} item {i}: field '{k}' has {got}, item 0 has "
                                f"shape {list(t.shape)}")
    return {k: torch.stack([r[k] for r in rows]) for k in first}


def load_hook(ref: str, data: dict[str, Any]) -> ArrayData:
    """The dataset ``ref`` (``MODULE:FUNCTION``) makes, as an :class:`ArrayData`."""
    made = _function(ref)()
    parts = made if isinstance(made, dict) else {"train": made}
    if "train" not in parts:
        raise DataError(f"--dataset '{ref}': the returned dict needs a 'train' dataset (has {', '.join(parts)})")
    read = {s: _read(ds, ref, s) for s, ds in parts.items() if ds is not None}
    names = list(read["train"])
    fields = {k: torch.cat([read[s][k] for s in read]) for k in names}
    if len(read) == 1:
        splits = split_indices(len(fields[names[0]]), data["val_fraction"], data["test_fraction"] or 0.0,
                               data["split_seed"])
    else:
        sizes = [len(read[s][names[0]]) for s in read]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        splits = {s: torch.arange(a, a + n) for s, a, n in zip(read, starts, sizes)}
    meta: dict[str, Any] = {"name": ref}
    for k, t in fields.items():
        if t.is_floating_point():
            fields[k] = t.float()
        elif k == "y":
            fields[k] = t.long()
            meta["num_classes"] = int(t.max()) + 1
    return ArrayData(fields, splits, meta)
