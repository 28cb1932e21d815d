"""Resumable training checkpoints: one safetensors file, written atomically, verified on load.

A checkpoint holds every tensor of the run -- model (``model/<spec key>``),
optimizer state (``optim/<param index>/<name>``), and per process ``rank/<r>/...``
its torch RNG states and carried recurrent state -- and, as safetensors string
metadata, one JSON document: the spec fingerprint, the run configuration, the
step (the data position is a function of the step), scheduler, scaler and
early-stopping state, Python/numpy RNG states, plus a SHA-256 over that JSON
and the tensor bytes.

Writing: temp file in the same folder, written and fsynced, renamed over the
target, then the folder is fsynced; a crash at any moment leaves the previous
checkpoint and at worst a ``.*.tmp`` file that is never read. Reading never
unpickles: a file that is not safetensors (e.g. a ``torch.save`` pickle, which
can carry code) is refused, and a file whose digest does not match is refused
as corrupt or tampered. Only regular files are read (a FIFO named like a checkpoint is not opened).

Discovery and pruning count only checkpoints that verify: a broken or foreign file named
``step_*.safetensors`` is skipped with a warning and never deleted, and it never pushes a real checkpoint
out of the ``keep`` newest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

FORMAT = "nngraph-checkpoint/1"
STEP_RE = re.compile(r"^step_(\d+)\.safetensors$")
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, not ours, corrupt, or for another model."""


@dataclass
class Checkpoint:
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    path: Path

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        p = prefix + "/"
        return {k[len(p):]: v for k, v in self.tensors.items() if k.startswith(p)}


def _digest(state_json: str, data: bytes) -> str:
    h = hashlib.sha256()
    h.update(state_json.encode("utf-8"))
    h.update(b"\0")
    h.update(data)
    return h.hexdigest()


def _header_len(blob: bytes) -> int:
    return struct.unpack("<Q", blob[:8])[0]


def encode(tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> bytes:
    """Serialize to safetensors bytes with the JSON state and its digest as metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    state_json = json.dumps(state, sort_keys=True)
    first = save(tensors, metadata={"format": FORMAT, "state": state_json})
    data = first[8 + _header_len(first):]
    blob = save(tensors, metadata={"format": FORMAT, "state": state_json, "sha256": _digest(state_json, data)})
    assert blob[8 + _header_len(blob):] == data
    return blob


def decode(blob: bytes, path: Path) -> Checkpoint:
    """Parse and verify checkpoint bytes; raises :class:`CheckpointError` with the reason."""
    n = _header_len(blob) if len(blob) >= 8 else -1
    header = None
    if 0 < n <= min(len(blob) - 8, _MAX_HEADER) and blob[8:9] == b"{":
        try:
            header = json.loads(blob[8:8 + n])
        except ValueError:
            header = None
    if not isinstance(header, dict):
        if blob[:2] == b"PK" or blob[:1] == b"\x80":  # a torch.save zip or a bare pickle
            raise CheckpointError(f"'{path}' is a pickle / torch.save file, not an nngraph checkpoint: refusing to "
                                  "load it (unpickling can run arbitrary code; checkpoints are safetensors)")
        raise CheckpointError(f"'{path}' is not a safetensors checkpoint (bad or truncated header)")
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not an nngraph training checkpoint (format {meta.get('format')!r}, "
                              f"expected {FORMAT!r})")
    state_json, digest = meta.get("state", ""), meta.get("sha256", "")
    if _digest(state_json, blob[8 + _header_len(blob):]) != digest:
        raise CheckpointError(f"'{path}' is corrupt or was modified: its SHA-256 does not match the recorded one")
    try:
        from safetensors.torch import load

        tensors = load(blob)
        state = json.loads(state_json)
    except Exception as exc:  # noqa: BLE001 - any parse failure is "unusable checkpoint"
        raise CheckpointError(f"'{path}' cannot be read: {type(exc).__name__}: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}': its state is a JSON {type(state).__name__}, not an object")
    return Checkpoint(tensors, state, path)


def read(path: str | Path) -> Checkpoint:
    """Read and verify the checkpoint at ``path`` (a regular file); raises :class:`CheckpointError`."""
    from nngraph import readers

    path = Path(path)
    try:  # regular files within the tensor share of memory: a FIFO would block, /dev/zero would fill memory
        blob = readers.read_bytes(path, readers.memory_cap(readers.TENSOR_SHARE), "checkpoint")
    except readers.FileRefused as exc:
        raise CheckpointError(str(exc)) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc.strerror or exc}") from None
    ckpt = decode(blob, path)
    _VERIFIED.add(_identity(path))
    return ckpt


#: files known to verify, by identity (device, inode, size, mtime): pruning reads each file at most once
_VERIFIED: set[tuple[int, ...]] = set()


def _identity(path: Path) -> tuple[int, ...]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def verifies(path: Path) -> bool:
    """Whether ``path`` is a checkpoint that verifies (read once per version of the file)."""
    try:
        if _identity(path) in _VERIFIED:
            return True
        read(path)
        return True
    except (OSError, CheckpointError):
        return False


def header_metadata(path: Path) -> dict[str, str]:
    """The safetensors ``__metadata__`` of a regular file, reading only its header ({} when it has none)."""
    from nngraph.readers import read_head

    try:
        head = read_head(path, 8, "weights file")
        n = _header_len(head) if len(head) == 8 else 0
        if not 0 < n <= _MAX_HEADER:
            return {}
        meta = json.loads(read_head(path, 8 + n, "weights file")[8:]).get("__metadata__")
    except (OSError, ValueError, AttributeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, blob: bytes, chunk: int = 1 << 20) -> None:
    """Temp file, write in chunks, fsync, rename, fsync the folder.

    ``NNGRAPH_CHECKPOINT_WRITE_DELAY`` (seconds) pauses between chunks: a test
    hook that makes "killed while writing a checkpoint" reproducible.
    """
    from nngraph.outputs import check_target

    delay = float(os.environ.get("NNGRAPH_CHECKPOINT_WRITE_DELAY", "0") or 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            for start in range(0, len(blob), chunk):
                fh.write(blob[start:start + chunk])
                if delay:
                    fh.flush()
                    time.sleep(delay)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        check_target(path)  # a link, FIFO or folder at the checkpoint's name is never replaced
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(folder: Path, name: str, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    path = folder / name
    write_atomic(path, encode(tensors, {**state, "format": FORMAT}))
    _VERIFIED.add(_identity(path))  # just written from these tensors: it verifies
    return path


def save_step(folder: Path, name: str | None, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any],
              keep: int) -> Path:
    """Save a checkpoint (``name``, or the step's name — then older step checkpoints beyond ``keep`` are pruned)."""
    path = save(folder, name or step_name(step), tensors, state)
    if name is None:
        prune(folder, keep, step)
    return path


def step_name(step: int) -> str:
    return f"step_{step:09d}.safetensors"


def step_files(folder: Path) -> list[tuple[int, Path]]:
    """Step checkpoint candidates in ``folder`` (regular files named ``step_N.safetensors``), newest first; temp
    files, FIFOs and folders are never listed. Candidates are not verified: see :func:`latest`."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    out = [(int(m.group(1)), Path(e.path)) for e in entries if (m := STEP_RE.match(e.name)) and _is_file(e)]
    return sorted(out, reverse=True)


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def latest(folder: Path, warn: Any = None) -> Checkpoint | None:
    """The newest step checkpoint that verifies; broken ones are reported through ``warn`` and skipped."""
    for _, path in step_files(folder):
        try:
            return read(path)
        except CheckpointError as exc:
            if warn:
                warn(f"skipping {exc}")
    return None


def resume_latest(trainer: Any, folder: Path, say: Any) -> int:
    """Resume ``trainer`` (anything with ``resume(checkpoint)`` and ``step``) from the newest checkpoint in ``folder``
    that verifies, saying what happened; the step it resumed at. None verifies: :class:`CheckpointError` (a resume
    never silently starts again from step 0; ``train(overwrite=True)`` decides that before it gets here)."""
    ckpt = latest(folder, warn=say)
    if ckpt is None:
        raise CheckpointError(nothing_to_resume(folder))
    trainer.resume(ckpt)
    say(f"resumed from {ckpt.path} (step {trainer.step})")
    return trainer.step


def nothing_to_resume(folder: Path) -> str:
    """What --resume says when no checkpoint in ``folder`` verifies, and what to do."""
    found = len(step_files(folder))
    what = f"none of its {found} step checkpoints verifies" if found else "it holds no step checkpoint"
    return (f"--resume: nothing to resume in '{folder}': {what}; start again from step 0 with --resume --overwrite "
            "(the run's other files are replaced), or give another --out")


def prune(folder: Path, keep: int, written: int | None = None) -> None:
    """Delete the step checkpoints beyond the newest ``keep`` that verify, and stale temp files.

    Only checkpoints that verify count and are ever deleted. ``written``: the step of the checkpoint just
    saved; verified ones after it belong to an earlier run in this folder that this run replaced (a resumed
    run starts at the newest verified one), so they go as well, or they would outrank this run's own.
    """
    kept = 0
    for step, path in step_files(folder):
        if not verifies(path):
            continue
        if (written is None or step <= written) and kept < max(keep, 1):
            kept += 1
            continue
        path.unlink(missing_ok=True)
    for tmp in folder.glob(".step_*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)


# ----- optimizer state <-> flat tensors + JSON -------------------------------------
def flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim/{idx}/{k}"] = v
            else:
                plain.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def unflatten_optimizer(ckpt: Checkpoint, meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in ckpt.group("optim").items():
        idx, _, name = key.partition("/")
        state.setdefault(int(idx), {})[name] = v
    for idx, st in meta["plain"].items():
        state.setdefault(int(idx), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state(device: torch.device | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's torch RNG states (tensors: CPU, and the CUDA device in use) and Python/numpy ones (JSON)."""
    import random

    import numpy as np

    tensors = {"rng/torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        tensors["rng/cuda"] = torch.cuda.get_rng_state(device)
    py = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return tensors, {"python": [py[0], list(py[1]), py[2]],
                     "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]}


def set_rng_state(ckpt: Checkpoint, meta: dict[str, Any], rank: int = 0, device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` saved; torch states come from this rank's ``rank/<r>/rng/...`` tensors."""
    import random

    import numpy as np

    mine = ckpt.group(f"rank/{rank}/rng")
    torch.set_rng_state(mine["torch"])
    if "cuda" in mine and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(mine["cuda"], device)
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
