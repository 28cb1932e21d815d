"""Where nngraph may write: never over one of the command's own inputs, never over anything that is not a
regular file (a link, a folder, a FIFO, a device), never below a path whose "folder" is a file.

Every command checks its output options with :func:`check_output` before doing any work (a refusal then
costs nothing and names the option), and the atomic writers (:mod:`nngraph.io`, the ONNX model files, the
training checkpoints) check their target again with :func:`check_target` right before they rename over it.
A refusal is an :class:`OutputError`: a located diagnostic (the path) with what to do, exit 1.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Iterable, Union

from .errors import Diagnostic, SourcePos, SpecError

PathLike = Union[str, "os.PathLike[str]"]

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class OutputError(SpecError):
    """An output path nngraph refuses to write; reported at the path, with a hint."""

    def __init__(self, path: PathLike, message: str, hint: str):
        super().__init__([Diagnostic(SourcePos(str(path)), message, hint)])


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name one file: the same inode when both exist (hard links, symlinks), else the same
    resolved path."""
    try:
        sa, sb = os.stat(a), os.stat(b)
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
    except (OSError, ValueError):  # one is missing (or not a usable path): compare where they lead
        try:
            return os.path.realpath(a) == os.path.realpath(b)
        except (OSError, ValueError):
            return False


def check_output(output: PathLike | None, inputs: Iterable[tuple[str, PathLike | None]], option: str = "-o") -> None:
    """Refuse ``output`` (given as ``option``) when it is one of ``inputs`` -- ``(label, path)`` pairs such as
    ``("the spec", spec)`` -- by any name, or when :func:`check_target` refuses it."""
    if output is None:
        return
    if (found := _input_at(output, inputs)) is not None:
        raise OutputError(output, f"{option} '{output}' is {found}: writing it would destroy that input",
                          f"give {option} another path")
    check_target(output, option)


def _input_at(output: PathLike, inputs: Iterable[tuple[str, PathLike | None]]) -> str | None:
    """``"the spec 'a.yaml'"`` when ``output`` is one of ``inputs`` by any name, else None."""
    return next((f"{label} '{path}'" for label, path in inputs if path is not None and same_file(output, path)), None)


def check_beside(output: PathLike | None, beside: PathLike, inputs: Iterable[tuple[str, PathLike | None]],
                 why: str) -> None:
    """Refuse the file ``beside`` that ``why`` (an option) makes the command write next to ``-o output``
    (``m.onnx.data``, ``m.encoder.onnx``) like ``-o`` itself: not an input, a name its folder can hold."""
    if output is None:
        return
    beside = Path(beside)
    limit, size = _name_max(beside.parent), len(os.fsencode(beside.name))
    if size > limit:
        longer = size - len(os.fsencode(Path(output).name))
        raise OutputError(output, f"-o '{output}': {why} also writes '{beside.name}' beside it, a name of {size} bytes, "
                                  f"more than the limit of {limit} for one file name in '{beside.parent}'",
                          f"give -o a name of at most {limit - longer} bytes")
    refuse_input_beside(output, beside, inputs, f"{why} also writes")
    check_target(beside, f"the file {why} writes beside -o")


def refuse_input_beside(output: PathLike | None, beside: PathLike, inputs: Iterable[tuple[str, PathLike | None]],
                        writes: str) -> None:
    """Refuse ``-o output`` when the file it may make beside it (``writes`` says why) is one of the inputs."""
    if output is not None and (found := _input_at(Path(beside), inputs)) is not None:
        raise OutputError(output, f"-o '{output}': {writes} '{beside}' beside it, which is {found}: writing "
                                  "it would destroy that input", "give -o another path")


def spec_inputs(spec: PathLike) -> list[tuple[str, Path]]:
    """The files a command reading ``spec`` reads: the spec and every block library it imports, directly or
    through other libraries (an output must be none of them)."""
    from .spec.blocks import imported_files

    return [("the spec", Path(spec)), *(("a block library the spec imports", p) for p in imported_files(Path(spec)))]


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the filesystem of ``folder`` (or its nearest existing ancestor) holds."""
    for path in (folder, *folder.parents):
        try:
            return os.pathconf(path, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


def folder_files(label: str, folder: PathLike | None, *subfolders: str) -> list[tuple[str, Path]]:
    """``(label, file)`` for each file directly in ``folder`` (and in its ``subfolders``) when it is a folder:
    the inputs of an option that takes a folder (a training run, a folder of shards)."""
    if folder is None or not os.path.isdir(folder):
        return []
    found = []
    for sub in (".", *subfolders):
        try:
            found += [(label, Path(e.path)) for e in os.scandir(Path(folder) / sub) if e.is_file()]
        except OSError:
            continue
    return found


def name_problem(name: str) -> str | None:
    """Why ``name`` (a spec's ``name``) cannot name a folder -- it is a name, not a path -- or None."""
    if name in ("", ".", ".."):
        return f"'{name}' is not a name"
    if any(c in name for c in "/\\") or any(ord(c) < 32 for c in name):
        return "a name holds no path separators or control characters"
    return None


def folder_name(name: str) -> str:
    """``name`` made safe as one folder name (what :func:`name_problem` refuses is replaced by ``_``)."""
    safe = "".join("_" if c in "/\\" or ord(c) < 32 else c for c in name)
    return safe if safe.strip(".") else "_" + safe


def check_target(path: PathLike, option: str = "the output") -> None:
    """Refuse to replace anything but a regular file or nothing: a symlink, a folder, a FIFO, a device; refuse
    to create a file whose name is longer than its folder's filesystem holds."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        _check_folder(Path(path))
        return
    except PermissionError:
        return  # a folder we may not search: the write itself reports it, naming the folder (as in _check_folder)
    except (OSError, ValueError) as exc:
        if getattr(exc, "errno", None) == errno.ENAMETOOLONG:
            name, folder = os.fsencode(Path(path).name), Path(path).parent
            raise OutputError(path, f"{option} '{path}': the name is {len(name)} bytes, more than the limit of "
                                    f"{_name_max(folder)} for one file name in '{folder}'", "give a shorter name") from None
        raise OutputError(path, f"cannot write '{path}': {getattr(exc, 'strerror', None) or exc}",
                          "give another output path") from None
    if stat.S_ISLNK(mode):
        raise OutputError(path, f"'{path}' is a symbolic link: nngraph does not replace links (it would become a file)",
                          "give the path the link points to, or another output path")
    kind = next((name for test, name in _KINDS if test(mode)), None if stat.S_ISREG(mode) else "not a regular file")
    if kind is not None:
        raise OutputError(path, f"'{path}' is {kind}: nngraph only replaces regular files", "give a file path to write")
    if not os.access(Path(path).parent, os.W_OK | os.X_OK):  # the new file is made beside it, then renamed over it
        raise not_writable(path, Path(path).parent)


def not_writable(path: PathLike, folder: Path, reason: str = "permission denied") -> OutputError:
    """The refusal of a write into ``folder`` that the file system forbids (a read-only folder), naming it."""
    return OutputError(path, f"cannot write '{path}': the folder '{folder}' is not writable ({reason})",
                       "write into a folder you may write to, or change its permissions")


def _check_folder(path: Path) -> None:
    """The nearest existing ancestor of a missing ``path`` must be a folder (``afile/x`` cannot be made)."""
    for parent in path.parents:
        try:
            mode = os.stat(parent).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, ValueError):
            return  # unreadable: the write reports it
        if not stat.S_ISDIR(mode):
            raise OutputError(path, f"cannot create '{path}': '{parent}' is a file, not a folder",
                              f"write into a folder, or move '{parent}' out of the way")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise not_writable(path, parent)
        return
