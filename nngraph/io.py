"""Atomic file writes (a temp file in the same directory, fsync, then rename) and reads of regular files only.

A crash or a bad input never leaves a half-written schema, checkpoint or model, and the rename never
replaces anything but a regular file (:func:`nngraph.outputs.check_target`: not a link, a FIFO, a device).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .outputs import check_target


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the whole new one."""
    path = Path(path)
    check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


class NotARegularFile(OSError):
    """A path to read that is a FIFO, a device, a socket or a folder: reading it could block or never end."""


def read_regular_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of the regular file at ``path`` (at most ``limit``), checked before reading: opened without
    blocking, so a FIFO is refused instead of waiting forever for a writer."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
            raise NotARegularFile(f"'{path}' is {kind}, not a regular file")
        os.set_blocking(fd, True)
        return fh.read() if limit is None else fh.read(limit)
