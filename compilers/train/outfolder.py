"""Whether ``nngraph train`` may write into its output folder: never over files it did not make.

A run writes ``config.json``, ``metrics.jsonl``, ``summary.json``, weights and checkpoints into ``--out``
and replaces what is there. So it trains into a missing or empty folder, or a folder that is an nngraph
run of the same spec -- its checkpoints or ``model.safetensors`` name the spec, or (a run that stopped
before its first checkpoint) nothing there names a spec and its ``config.json`` is a training
configuration -- and anywhere else only when told: ``--resume`` continues the run there (only from a checkpoint that verifies), and
``--overwrite`` trains into the folder anyway -- with ``--resume``, starting again from step 0 when
nothing there verifies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from nngraph.compilers.torch.weights import FORMAT as WEIGHTS_FORMAT

from ..state import checkpoint as ck


def prepare(out: Path, run: Any, resume: bool, overwrite: bool, say: Callable[[str], None]) -> bool:
    """Check ``out`` for a run of ``run`` (a RunConfig); returns whether to resume (False: start at step 0).

    Raises :class:`~.checkpoint.CheckpointError` with what to do when the folder is not the run's to write."""
    if out.exists() and not out.is_dir():
        raise ck.CheckpointError(f"--out '{out}' is a file, not a folder: give a folder for the run")
    check_subfolders(out)
    if resume:
        if ck.latest(out / "checkpoints") is not None:
            return True
        if not overwrite:
            raise ck.CheckpointError(ck.nothing_to_resume(out / "checkpoints"))
        say(f"nothing to resume in {out / 'checkpoints'}: starting again from step 0 (--overwrite)")
        return False
    found = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    spec = run.graph.name
    if found and not overwrite and not is_run_of(out, spec, set(run.values)):
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise ck.CheckpointError(f"--out '{out}' holds files ({shown}) and is not an nngraph run of spec '{spec}': "
                                 "training would replace them; pass --overwrite to train into it anyway, --resume "
                                 "to continue a run there, or give another --out")
    return False


#: the folders a run writes into, with what goes there (the files a run writes are checked by the atomic writers)
SUBFOLDERS = {"checkpoints": "checkpoints", "tb": "TensorBoard event files", "mlruns": "MLflow file store",
              "wandb": "W&B run files"}


def check_subfolders(out: Path) -> None:
    """Refuse a run folder whose ``checkpoints`` or ``tb`` is a symbolic link (the run's files would land where
    it points, outside the run folder) or is not a folder; raises :class:`~.checkpoint.CheckpointError`."""
    for name, what in SUBFOLDERS.items():
        path = out / name
        if path.is_symlink():
            raise ck.CheckpointError(f"'{path}' is a symbolic link (to '{os.readlink(path)}'): the run writes its {what} "
                                     "into it, outside the run folder; remove the link, or give another --out")
        if path.exists() and not path.is_dir():
            raise ck.CheckpointError(f"'{path}' is not a folder: the run writes its {what} into a folder of that "
                                     "name; move it away, or give another --out")


def is_run_of(out: Path, spec: str, config_keys: set[str]) -> bool:
    """Whether ``out`` holds a training run of spec ``spec``: the specs its weights and checkpoints name (read from
    the safetensors headers only), or when none does, a ``config.json`` with the keys of a training configuration."""
    named = spec_names(out)
    if named:
        return spec in named
    from nngraph.readers import read_head

    try:
        config = json.loads(read_head(out / "config.json", 1 << 20, "run configuration"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and set(config) == config_keys


def spec_names(out: Path) -> set[str]:
    """The spec names that ``out/model.safetensors`` and the checkpoints in ``out/checkpoints`` were saved from."""
    names = set()
    meta = ck.header_metadata(out / "model.safetensors")
    if meta.get("format") == WEIGHTS_FORMAT:
        names.add(meta.get("spec"))
    for _, path in ck.step_files(out / "checkpoints"):
        meta = ck.header_metadata(path)
        try:
            state = json.loads(meta.get("state", "{}")) if meta.get("format") == ck.FORMAT else {}
        except ValueError:
            continue
        if isinstance(state, dict):
            names.add(state.get("spec"))
    return names - {None}
