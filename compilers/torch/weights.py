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
from dataclasses import dataclass
from pathlib import Path

import torch

from nngraph import __version__
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
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                meta = dict(fh.metadata() or {})
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            return Weights(tensors, meta)
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a weights file we accept"
        raise WeightsError(f"cannot read weights from '{path}': {type(exc).__name__}: {exc}") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise WeightsError(f"'{path}' is not an nngraph weights file (expected a dict with 'state_dict')")
    return Weights(dict(blob["state_dict"]), {str(k): str(v) for k, v in (blob.get("metadata") or {}).items()})


def check_fingerprint(weights: Weights, graph: Graph, path: str | Path | None = None) -> str | None:
    """A warning when the weights (read from ``path``) were saved from a different architecture, else None."""
    saved = weights.metadata.get("fingerprint")
    if saved and saved != graph.fingerprint():
        why = vars_mismatch(path, weights.metadata, graph)
        return ((f"{why}; " if why else f"weights were saved from spec '{weights.metadata.get('spec', '?')}' with "
                 f"fingerprint {saved}, this spec is {graph.fingerprint()}: ")
                + "loading the parameters whose names and shapes match")
    return None
