"""Whether ``nngraph train`` may write into its output folder: never over files it did not make.

A run writes ``config.json``, ``metrics.jsonl``, ``summary.json``, weights and checkpoints into ``--out``
and replaces what is there. So it trains into a missing or empty folder, or a folder that is an nngraph
run of the same spec (its checkpoints or ``model.safetensors`` name the spec: a rerun), and anywhere
else only when told: ``--resume`` continues the run there (only from a checkpoint that verifies), and
``--overwrite`` trains into the folder anyway -- with ``--resume``, starting again from step 0 when
nothing there verifies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from nngraph.compilers.torch.weights import FORMAT as WEIGHTS_FORMAT

from . import checkpoint as ck


def prepare(out: Path, spec: str, resume: bool, overwrite: bool, say: Callable[[str], None]) -> bool:
    """Check ``out`` for a run of spec ``spec``; returns whether to resume (False: start at step 0).

    Raises :class:`~.checkpoint.CheckpointError` with what to do when the folder is not the run's to write."""
    if out.exists() and not out.is_dir():
        raise ck.CheckpointError(f"--out '{out}' is a file, not a folder: give a folder for the run")
    if resume:
        if ck.latest(out / "checkpoints") is not None:
            return True
        if not overwrite:
            raise ck.CheckpointError(ck.nothing_to_resume(out / "checkpoints"))
        say(f"nothing to resume in {out / 'checkpoints'}: starting again from step 0 (--overwrite)")
        return False
    found = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if found and not overwrite and not is_run_of(out, spec):
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise ck.CheckpointError(f"--out '{out}' holds files ({shown}) and is not an nngraph run of spec '{spec}': "
                                 "training would replace them; pass --overwrite to train into it anyway, --resume "
                                 "to continue a run there, or give another --out")
    return False


def is_run_of(out: Path, spec: str) -> bool:
    """Whether ``out`` holds a training run of spec ``spec``: its final weights or a checkpoint name the spec
    (read from the safetensors headers only)."""
    import json

    meta = ck.header_metadata(out / "model.safetensors")
    if meta.get("format") == WEIGHTS_FORMAT and meta.get("spec") == spec:
        return True
    for _, path in ck.step_files(out / "checkpoints"):
        meta = ck.header_metadata(path)
        try:
            state = json.loads(meta.get("state", "{}")) if meta.get("format") == ck.FORMAT else {}
        except ValueError:
            continue
        if isinstance(state, dict) and state.get("spec") == spec:
            return True
    return False
