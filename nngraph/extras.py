"""Which optional extra brings a missing module: the message a command gives instead of a traceback.

The core install (``pip install nngraph``) is the torch-free front end; back ends come with extras
(``pip install 'nngraph[onnx]'``). The extras are read from the installed package's own metadata
(pyproject.toml's ``[project.optional-dependencies]``), so this table is never kept twice.
"""

from __future__ import annotations

import re
from importlib import metadata

#: extras that only gather others: never the one to suggest
_UMBRELLAS = ("all", "dev")
_REQ = re.compile(r"^([A-Za-z0-9._-]+)[^;]*;\s*extra\s*==\s*['\"]([^'\"]+)['\"]")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires() -> list[str]:
    try:
        return metadata.requires("nngraph") or []
    except metadata.PackageNotFoundError:
        return []


def extras_by_package() -> dict[str, list[str]]:
    """Distribution name -> the extras that list it directly, from nngraph's installed metadata."""
    found: dict[str, list[str]] = {}
    for req in _requires():
        m = _REQ.match(req)
        if m and m.group(2) not in _UMBRELLAS and _canonical(m.group(1)) != "nngraph":
            found.setdefault(_canonical(m.group(1)), []).append(m.group(2))
    return found


def _included(extra: str) -> set[str]:
    """``extra`` and every extra it pulls in through ``nngraph[...]`` (hf -> hf, torch)."""
    nested: dict[str, set[str]] = {}
    for req in _requires():
        inner = re.match(r"^nngraph\[([^\]]+)\][^;]*;\s*extra\s*==\s*['\"]([^'\"]+)['\"]", req)
        if inner:
            nested.setdefault(inner.group(2), set()).update(e.strip() for e in inner.group(1).split(","))
    seen, todo = set(), [extra]
    while todo:
        e = todo.pop()
        if e not in seen:
            seen.add(e)
            todo += nested.get(e, set())
    return seen


def missing_extra_message(module: str, prefer: str | None = None) -> str | None:
    """``pip install 'nngraph[EXTRA]'`` advice for a missing top-level module, or None if no extra has it.

    ``prefer``: the extra a command is documented with (import-hf: hf), named whenever it brings the module."""
    top = module.split(".")[0]
    extras = extras_by_package().get(_canonical(top))
    if not extras:
        return None
    extra = prefer if prefer is not None and _included(prefer) & set(extras) else extras[0]
    return (f"this command needs {top}, which is not installed: pip install 'nngraph[{extra}]' "
            f"(or 'nngraph[all]' for every back end)")
