"""Atomic file writes (a temp file in the same directory, fsync, then rename); reads go through :mod:`nngraph.readers`.

A crash or a bad input never leaves a half-written schema, checkpoint or model, and the rename never
replaces anything but a regular file (:func:`nngraph.outputs.check_target`: not a link, a FIFO, a device).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .outputs import check_target, not_writable


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the whole new one."""
    path = Path(path)
    check_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except PermissionError as exc:  # check_target saw it writable, yet the file system says no (ACLs, a race)
        raise not_writable(path, path.parent, exc.strerror or "permission denied") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file should look like any other
        check_target(path)  # again: the path may have become a link or a FIFO while the data was written
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    """UTF-8 text version of :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))
