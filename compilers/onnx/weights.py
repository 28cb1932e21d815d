"""Weights for an export: nngraph weights files, training checkpoints (LoRA adapters merged), training output folders.

Accepted by ``nngraph export --weights``:

* an nngraph weights file (``.safetensors`` or ``.pt``, :func:`nngraph.compilers.torch.weights.save_weights`;
  also ``OUT/model.safetensors`` of a training run, adapters already merged);
* a training checkpoint (``OUT/checkpoints/step_*.safetensors`` or ``best.safetensors``, format
  ``nngraph-checkpoint/1``, :mod:`nngraph.compilers.train.checkpoint`): verified (SHA-256), its ``model/*``
  tensors loaded; when the run trained LoRA adapters (``state["lora"]``: the wrapped layer names),
  the layers are wrapped with the run's rank/alpha, the adapters loaded, and
  :func:`nngraph.compilers.train.lora.merge_lora` folds ``(alpha/r)·B·A`` into each weight, so the exported
  graph is the plain spec with merged weights;
* a training output folder: its ``model.safetensors`` if present, else the newest checkpoint in
  ``checkpoints/``.

Loading is strict (every parameter, right shapes); a file saved from another architecture
(fingerprint) is refused with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
        from nngraph.compilers.train.checkpoint import step_files

        for folder in (path / "checkpoints", path):
            steps = step_files(folder)
            if steps:
                return steps[0][1]
        raise ExportWeightsError(f"'{path}' is a folder without model.safetensors or checkpoints/step_*.safetensors")
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
        from nngraph.compilers.train import checkpoint as ck

        try:
            ckpt = ck.read(file)
        except ck.CheckpointError as exc:
            raise ExportWeightsError(str(exc)) from None
        saved = ckpt.state.get("fingerprint")
        if saved and saved != graph.fingerprint():
            raise ExportWeightsError(f"checkpoint '{file}' was saved from a different architecture (fingerprint "
                                     f"{saved}, this spec is {graph.fingerprint()})")
        state = ckpt.group("model")
        lora = list(ckpt.state.get("lora") or [])
        notes.append(f"training checkpoint at step {ckpt.state.get('run', {}).get('step', '?')}")
        if lora:
            from nngraph.compilers.train.lora import apply_lora, merge_lora

            cfg = (ckpt.state.get("config") or {}).get("lora") or {}
            apply_lora(module, lora, int(cfg.get("rank", 8)), float(cfg.get("alpha", cfg.get("rank", 8))), 0.0)
            _load(module, state, file, load_state_dict, StateDictError)
            merged = merge_lora(module)
            notes.append(f"LoRA adapters of {merged} linear layers merged into their weights "
                         f"(rank {cfg.get('rank')}, alpha {cfg.get('alpha')})")
            return notes
        _load(module, state, file, load_state_dict, StateDictError)
        return notes
    from nngraph.compilers.torch.weights import WeightsError, load_weights

    try:
        weights = load_weights(file)
    except WeightsError as exc:
        raise ExportWeightsError(str(exc)) from None
    saved = weights.metadata.get("fingerprint")
    if saved and saved != graph.fingerprint():
        raise ExportWeightsError(f"'{file}' was saved from spec '{weights.metadata.get('spec', '?')}' with fingerprint "
                                 f"{saved}; this spec is {graph.fingerprint()}")
    _load(module, weights.tensors, file, load_state_dict, StateDictError)
    return notes


def _load(module: Any, state: dict, file: Path, load_state_dict: Any, error: type) -> None:
    try:
        load_state_dict(module, state)
    except error as exc:
        raise ExportWeightsError(f"'{file}' does not fit this spec: {exc}") from None
