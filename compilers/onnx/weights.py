"""Weights for an export: nngraph weights files, training checkpoints (LoRA adapters merged), training output folders.

Accepted by ``nngraph export --weights``:

* an nngraph weights file (``.safetensors`` or ``.pt``, :func:`nngraph.compilers.torch.weights.save_weights`;
  also ``OUT/model.safetensors`` of a training run, adapters already merged);
* a training checkpoint (``OUT/checkpoints/step_*.safetensors`` or ``best.safetensors``, format
  ``nngraph-checkpoint/1``, :mod:`nngraph.compilers.state.checkpoint`): verified (SHA-256), its ``model/*``
  tensors loaded; when the run trained LoRA adapters (``state["lora"]``: the wrapped layer names),
  the layers are wrapped with the run's rank/alpha, the adapters loaded, and
  :func:`nngraph.compilers.state.lora.merge_lora` folds ``(alpha/r)·B·A`` into each weight, so the exported
  graph is the plain spec with merged weights;
* a training output folder: its ``model.safetensors`` if present, else the newest checkpoint in
  ``checkpoints/`` that verifies.

Loading is strict (every parameter, right shapes); a file saved from another architecture
(fingerprint) is refused with the reason: the vars that differ, when the weights record theirs (see
:mod:`nngraph.run_folder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nngraph.run_folder import mismatch_message

CHECKPOINT_FORMAT = "nngraph-checkpoint/1"


class ExportWeightsError(ValueError):
    """Weights that cannot be used for this export."""


def _regular(path: Path) -> Path:
    """``path`` once it is a regular file within the tensor share of memory: a FIFO would block the readers,
    a device never ends, a sparse giant would fill memory (the message names which)."""
    from nngraph import readers

    try:
        readers.check_regular(path, readers.memory_cap(readers.TENSOR_SHARE), "weights file")
    except readers.FileRefused as exc:
        raise ExportWeightsError(str(exc)) from None
    return path


def _safetensors_format(path: Path) -> str | None:
    if path.suffix != ".safetensors":
        return None
    _regular(path)  # before safe_open, which a FIFO would block
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("format")
    except Exception:  # noqa: BLE001 - not readable as safetensors: load_weights reports it
        return None


def resolve(path: str | Path) -> Path:
    """The file a ``--weights`` argument names (a training folder -> its final weights or newest checkpoint)."""
    path = Path(path)
    if path.is_dir():
        if (path / "model.safetensors").is_file():
            return path / "model.safetensors"
        from nngraph.compilers.state.checkpoint import latest

        for folder in (path / "checkpoints", path):
            newest = latest(folder)  # the newest that verifies (regular files only: a FIFO is never opened)
            if newest is not None:
                return newest.path
        raise ExportWeightsError(f"'{path}' is a folder without model.safetensors or a checkpoints/step_*.safetensors "
                                 "that verifies")
    if not path.is_file():
        raise ExportWeightsError(f"weights file '{path}' not found")
    return path


def load_into(module: Any, graph: Any, path: str | Path) -> list[str]:
    """Load ``path``'s weights into ``module`` (built from ``graph``); returns notes (what was loaded, merged)."""
    from nngraph.compilers.torch import StateDictError, load_state_dict

    if not Path(path).is_dir():  # a FIFO or a device is named as such (resolve would say "not found")
        _regular(Path(path))
    file = resolve(path)
    notes = [f"weights: {file}"]
    if _safetensors_format(file) == CHECKPOINT_FORMAT:
        from nngraph.compilers.state.checkpoint import CheckpointError

        try:
            return notes + _from_checkpoint(module, graph, file)
        except CheckpointError as exc:
            raise ExportWeightsError(str(exc)) from None
    from nngraph.compilers.torch.weights import WeightsError, load_weights

    try:
        weights = load_weights(file)
    except WeightsError as exc:
        raise ExportWeightsError(str(exc)) from None
    saved = weights.metadata.get("fingerprint")
    if saved and saved != graph.fingerprint():
        raise ExportWeightsError(mismatch_message(file, weights.metadata, graph) or
                                 f"'{file}' was saved from spec '{weights.metadata.get('spec', '?')}' with fingerprint "
                                 f"{saved}; this spec is {graph.fingerprint()}")
    _load(module, weights.tensors, file, load_state_dict, StateDictError)
    return notes


def _from_checkpoint(module: Any, graph: Any, file: Path) -> list[str]:
    """Load a training checkpoint's model (its LoRA adapters merged); the notes. A state field that does not fit
    is a CheckpointError naming it (:mod:`nngraph.compilers.state.ckstate`)."""
    from nngraph.compilers.torch import StateDictError, load_state_dict
    from nngraph.compilers.state import checkpoint as ck
    from nngraph.compilers.state import ckstate

    ckpt = ck.read(file)
    saved = ckpt.state.get("fingerprint")
    if saved and saved != graph.fingerprint():
        raise ExportWeightsError(mismatch_message(file, None, graph) or
                                 f"checkpoint '{file}' was saved from a different architecture (fingerprint "
                                 f"{saved}, this spec is {graph.fingerprint()})")
    notes = [f"training checkpoint at step {ckstate.run_counters(ckpt, keys=())['step']}"]
    lora = ckstate.lora_layers(ckpt)
    if lora:
        from nngraph.compilers.state.lora import merge_lora

        rank, alpha = _adapt(module, ckpt, lora)
        _load(module, ckpt.group("model"), file, load_state_dict, StateDictError)
        notes.append(f"LoRA adapters of {merge_lora(module)} linear layers merged into their weights "
                     f"(rank {rank}, alpha {alpha})")
        return notes
    _load(module, ckpt.group("model"), file, load_state_dict, StateDictError)
    return notes


def _adapt(module: Any, ckpt: Any, lora: list[str]) -> tuple[int, float]:
    """Wrap the checkpoint's LoRA layers with its rank and alpha (returned); each must be a linear layer of the spec."""
    import glob
    import math

    from nngraph.compilers.state import ckstate
    from nngraph.compilers.state.lora import apply_lora

    cfg = ckstate.field(ckpt, "config").get("lora") or {}
    with ckstate.loading(ckpt, "config.lora"):
        rank, alpha = int(cfg.get("rank", 8)), float(cfg.get("alpha", cfg.get("rank", 8)))
        if rank < 1 or not math.isfinite(alpha):
            raise ValueError(f"rank {rank} and alpha {alpha} are not a positive rank and a finite alpha")
    wrapped = apply_lora(module, [glob.escape(n) for n in lora], rank, alpha, 0.0)
    if sorted(wrapped) != sorted(lora):
        raise ckstate.bad_field(ckpt, "lora", f"names layers that are not linear layers of this spec: "
                                              f"{sorted(set(lora) - set(wrapped))}")
    return rank, alpha


def _load(module: Any, state: dict, file: Path, load_state_dict: Any, error: type) -> None:
    try:
        load_state_dict(module, state)
    except error as exc:
        raise ExportWeightsError(f"'{file}' does not fit this spec: {exc}") from None
