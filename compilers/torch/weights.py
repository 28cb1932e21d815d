"""Saving and loading a compiled model's weights, keyed by spec names, safely and atomically.

Two formats, chosen by the file suffix:

* ``.safetensors`` -- tensors plus string metadata (spec name, architecture
  fingerprint, nngraph version); cannot carry code.
* anything else (``.pt``) -- a ``torch.save`` dict of the same content, read
  back only with ``torch.load(..., weights_only=True)``.

Both are written to a temp file and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nngraph import __version__, readers
from nngraph.io import write_bytes_atomic
from nngraph.ir import Graph
from nngraph.run_folder import vars_metadata, vars_mismatch

from .state import state_dict_for

FORMAT = "nngraph-weights/1"


@dataclass
class Weights:
    """Tensors keyed by spec names, with the metadata they were saved with."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]


class WeightsError(ValueError):
    """A weights file that cannot be read or does not belong to this spec."""


def save_weights(module: torch.nn.Module, graph: Graph, path: str | Path) -> None:
    """Write the module's spec-keyed state dict with metadata to ``path`` atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict_for(module).items()}
    meta = {"format": FORMAT, "spec": graph.name, "fingerprint": graph.fingerprint(), "nngraph": __version__,
            "vars": vars_metadata(graph)}  # a fingerprint mismatch is then explained by the vars that differ
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save

        write_bytes_atomic(path, save(tensors, metadata=meta))
        return
    buf = io.BytesIO()
    torch.save({"metadata": meta, "state_dict": tensors}, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_weights(path: str | Path) -> Weights:
    """Read a weights file without executing anything from it; raises :class:`WeightsError`."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return Weights(*read_safetensors(path, "weights file"))
    blob = load_torch_file(path, "weights file")
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise WeightsError(f"'{path}' is not an nngraph weights file (expected a dict with 'state_dict')")
    return Weights(tensor_dict(blob["state_dict"], path),
                   {str(k): str(v) for k, v in (blob.get("metadata") or {}).items()})


def _checked(path: Path, what: str) -> None:
    """A regular file no bigger than the tensor share of memory (its tensors are copied into memory)."""
    try:
        readers.check_regular(path, readers.memory_cap(readers.TENSOR_SHARE), what)
    except readers.FileRefused as exc:
        raise WeightsError(str(exc)) from None


def read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, its type and size checked first."""
    _checked(path, what)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a weights file we accept"
        raise WeightsError(f"cannot read {what} '{path}': {type(exc).__name__}: {exc}") from None


def load_torch_file(path: Path, what: str) -> Any:
    """A ``torch.save`` file read with ``weights_only=True``: tensors and plain containers, never code."""
    _checked(path, what)
    try:
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol warning would precede our message
            return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's text suggests weights_only=False, i.e. running the file's code: we never advise that
        raise WeightsError(f"{what} '{path}' holds Python objects besides tensors ({_unpickler_reason(exc)}); "
                           "refused, because loading them could run code from the file: save plain tensors, "
                           "preferably as .safetensors") from None
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise WeightsError(f"cannot read {what} '{path}': {type(exc).__name__}: {str(exc)[:300]}") from None


def _unpickler_reason(exc: Exception) -> str:
    """The first sentence of what torch's safe unpickler objected to (``Unsupported global: ...``)."""
    found = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
    reason = found.group(1) if found else "not a plain state dict"
    return reason.split(". ")[0].strip()[:200]


def tensor_dict(state: dict, path: Path) -> dict[str, torch.Tensor]:
    """``state`` when it maps names to tensors; a WeightsError naming the first entry that does not."""
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsError(f"'{path}': entry {key!r} is {type(value).__name__}, not a tensor (a weights file "
                               "maps parameter names to tensors)")
    return dict(state)


def check_fingerprint(weights: Weights, graph: Graph, path: str | Path | None = None) -> str | None:
    """A warning when the weights (read from ``path``) were saved from a different architecture, else None."""
    saved = weights.metadata.get("fingerprint")
    if saved and saved != graph.fingerprint():
        why = vars_mismatch(path, weights.metadata, graph)
        return ((f"{why}; " if why else f"weights were saved from spec '{weights.metadata.get('spec', '?')}' with "
                 f"fingerprint {saved}, this spec is {graph.fingerprint()}: ")
                + "loading the parameters whose names and shapes match")
    return None
