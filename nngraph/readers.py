"""Opening user files for reading: regular files only, sizes checked before anything is read.

Every reader of user input (weights, checkpoints, training data, ``infer`` inputs) goes through
:func:`open_regular`. A FIFO would block the read forever, ``/dev/zero`` never ends, a 50 GB sparse
file costs nothing on disk but everything in memory; all are refused from ``fstat`` before a byte is
read, with the reason and the limit in the message. Limits are shares of the machine's memory
(:func:`memory_cap`): what a reader turns into Python objects gets a smaller share than what it
copies byte for byte.

Arrays are read with :func:`read_npy` / :func:`read_npz`: the size an ``.npy`` header declares (and, in
an ``.npz``, the size its zip directory declares) is checked before the array is allocated, so a
zip bomb or a forged header is refused without inflating it. Torch-free; numpy is imported lazily.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path
from typing import IO, Any

#: caps as shares of the machine's memory: weights and checkpoints become tensors of their size ...
TENSOR_SHARE = 2
#: ... data arrays are also converted and normalized (copies) ...
BINARY_SHARE = 4
#: ... and text parsed into Python objects (CSV, JSON, edge lists), which grows ~10-30x in memory
TEXT_SHARE = 32
#: a compressed .npz member may inflate at most this many times, beyond BOMB_FLOOR bytes (deflate
#: reaches ~1000x on constant data, which real data rarely is; np.savez stores uncompressed)
BOMB_RATIO = 200
BOMB_FLOOR = 64 << 20

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class FileRefused(ValueError):
    """A path that is not a readable regular file of an acceptable size; the message says which and why."""


def machine_memory() -> int:
    """The machine's physical memory in bytes (:func:`nngraph.limits.physical_memory`; 8 GiB where the platform
    does not say, so readers still have a cap)."""
    from .limits import physical_memory

    return physical_memory() or 8 << 30


def memory_cap(share: int) -> int:
    """A reader's size limit: 1/``share`` of the machine's memory."""
    return machine_memory() // share


def human_bytes(n: int) -> str:
    """``n`` bytes as a short decimal size (``2.1 GB``)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def too_big(size: int, cap: int, subject: str) -> FileRefused:
    """The refusal for ``subject`` of ``size`` bytes over ``cap``: both numbers, and the memory the cap derives from."""
    return FileRefused(f"{subject} is {human_bytes(size)}, over the {human_bytes(cap)} limit on this machine "
                       f"(a share of its {human_bytes(machine_memory())} memory)")


def open_regular(path: str | Path, max_bytes: int | None, what: str) -> IO[bytes]:
    """``path`` opened for binary reading, once it is known to be a regular file of at most ``max_bytes``.

    Opened non-blocking, so a FIFO cannot hang the open, then checked with ``fstat`` on that same
    descriptor (no window for the path to change between check and read).
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileRefused(f"{what} '{path}' not found") from None
    except OSError as exc:
        raise FileRefused(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        kind = next((name for test, name in _KINDS if test(st.st_mode)), None)
        if kind is not None or not stat.S_ISREG(st.st_mode):
            raise FileRefused(f"{what} '{path}' is not a regular file (it is {kind or 'a special file'}); "
                              "only regular files are read")
        if max_bytes is not None and st.st_size > max_bytes:
            raise too_big(st.st_size, max_bytes, f"{what} '{path}'")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str | Path, max_bytes: int | None, what: str) -> int:
    """For readers that need a path (mmap, protobuf): :func:`open_regular`'s checks only; returns the size."""
    with open_regular(path, max_bytes, what) as fh:
        return os.fstat(fh.fileno()).st_size


def read_head(path: str | Path, n: int, what: str) -> bytes:
    """The first ``n`` bytes (a header) of a file :func:`open_regular` accepts, whatever its size."""
    with open_regular(path, None, what) as fh:
        return fh.read(n)


def read_bytes(path: str | Path, max_bytes: int, what: str) -> bytes:
    """The whole file, checked by :func:`open_regular`; also refuses a file that grows past the cap while read."""
    chunks, total = [], 0
    with open_regular(path, max_bytes, what) as fh:
        # in pieces: fh.read(max_bytes + 1) would reserve the whole cap for every small file
        while chunk := fh.read(min(1 << 24, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise too_big(total, max_bytes, f"{what} '{path}'")
    return b"".join(chunks)


def read_npy(fh: IO[bytes], max_bytes: int, where: str, available: int | None) -> Any:
    """The array of an ``.npy`` stream, its header checked before allocating: no object dtype (that needs
    pickle), declared size within ``max_bytes`` and within the ``available`` bytes after the header."""
    import numpy as np

    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if reader is None:
            raise FileRefused(f"{where}: .npy format version {version} is not supported (save with numpy.save)")
        shape, fortran, dtype = reader(fh)
    except ValueError as exc:
        if isinstance(exc, FileRefused):
            raise
        raise FileRefused(f"{where}: not a readable .npy array ({exc})") from None
    if dtype.hasobject:
        raise FileRefused(f"{where}: object arrays need pickle, which is refused (dtype {dtype}): "
                          "save numeric arrays")
    count = 1
    for n in shape:
        count *= int(n)
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes:
        raise too_big(nbytes, max_bytes, f"{where}: the array {list(shape)} {dtype}")
    if available is not None and nbytes > available - fh.tell():
        raise FileRefused(f"{where}: the header declares {human_bytes(nbytes)} of data ({list(shape)} {dtype}) but the "
                          f"file holds {human_bytes(max(available - fh.tell(), 0))}: truncated or forged")
    flat = np.empty(count, dtype)
    _fill(fh, memoryview(flat.view(np.uint8)), where)
    return flat.reshape(shape, order="F" if fortran else "C")


def _fill(fh: IO[bytes], buf: memoryview, where: str) -> None:
    """Read exactly ``len(buf)`` bytes into ``buf`` (no second copy of the array)."""
    done = 0
    while done < len(buf):
        got = fh.readinto(buf[done:])
        if not got:
            raise FileRefused(f"{where}: the array data ends early (truncated file)")
        done += got


def npy_file(path: str | Path, max_bytes: int, what: str) -> Any:
    """The array of an ``.npy`` file (regular, size and header checked)."""
    with open_regular(path, max_bytes + (1 << 20), what) as fh:  # +1 MiB: the header
        return read_npy(fh, max_bytes, f"{what} '{path}'", os.fstat(fh.fileno()).st_size)


def npz_file(path: str | Path, max_bytes: int, what: str, names: list[str] | None = None) -> dict[str, Any]:
    """The arrays of an ``.npz`` archive (all, or those of ``names`` it holds), each checked before inflating:
    the size the zip directory declares, the inflation ratio (zip bombs), then the ``.npy`` header."""
    with open_regular(path, max_bytes, what) as fh:
        return read_npz(fh, max_bytes, f"{what} '{path}'", names)


def read_npz(fh: IO[bytes], max_bytes: int, where: str, names: list[str] | None = None) -> dict[str, Any]:
    """The arrays of an ``.npz`` stream (a file, or the bytes of a request body in a ``BytesIO``): all, or
    those of ``names`` it holds; each member checked as :func:`npz_file` says before it is inflated."""
    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileRefused(f"{where} is not a readable .npz archive ({exc})") from None
    with archive:
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        wanted = [n for n in (names if names is not None else members) if n in members]
        return {name: _npz_member(archive, members[name], max_bytes, f"{where} array '{name}'") for name in wanted}


def npz_names(path: str | Path, what: str) -> list[str]:
    """The array names an ``.npz`` archive holds (from its zip directory; nothing inflated)."""
    with open_regular(path, None, what) as fh:
        try:
            with zipfile.ZipFile(fh) as archive:
                return [info.filename.removesuffix(".npy") for info in archive.infolist()]
        except (zipfile.BadZipFile, OSError) as exc:
            raise FileRefused(f"{what} '{path}' is not a readable .npz archive ({exc})") from None


def _npz_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int, where: str) -> Any:
    if info.file_size > max_bytes:
        raise too_big(info.file_size, max_bytes, f"{where}: the member (as the zip directory declares)")
    if info.file_size > BOMB_FLOOR and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
        raise FileRefused(f"{where}: {human_bytes(info.compress_size)} inflate to {human_bytes(info.file_size)} "
                          f"(over {BOMB_RATIO}x): refused as a zip bomb; save it uncompressed (numpy.savez)")
    try:
        with archive.open(info) as member:
            return read_npy(member, max_bytes, where, info.file_size)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FileRefused(f"{where}: damaged archive member ({exc})") from None
