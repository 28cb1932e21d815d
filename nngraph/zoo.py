"""The model zoo: the specs nngraph ships, to start from (``nngraph zoo list|copy``).

In a source checkout (and an editable install) they are the repository's ``specs/``; an installed
wheel carries the same files as package data in ``nngraph/specs/`` (setup.py maps one to the other).
Each spec's header comment names the system it builds (``# System: ...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

SOURCE_SPECS = Path(__file__).resolve().parent.parent / "specs"


@dataclass(frozen=True)
class ZooSpec:
    """One shipped spec: its name (the file stem), where it lies, and the system it builds."""

    name: str
    file: Traversable
    system: str

    @property
    def text(self) -> str:
        return self.file.read_text(encoding="utf-8")


def zoo_root() -> Traversable:
    """Where the shipped specs lie: the wheel's package data, else the source checkout's specs/."""
    installed = resources.files("nngraph") / "specs"
    return installed if installed.is_dir() else SOURCE_SPECS


def _system(text: str) -> str:
    """The ``# System:`` header line of a spec, or its ``name``."""
    for line in text.splitlines():
        if line.startswith("# System:"):
            return line.removeprefix("# System:").strip()
    return ""


def zoo_specs() -> list[ZooSpec]:
    """Every shipped spec (top level first, then the seed systems), sorted by name within each."""
    root = zoo_root()
    found = []
    for folder in (root, root / "seeds"):
        files = sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
        found += [ZooSpec(f.name.removesuffix(".yaml"), f, _system(f.read_text(encoding="utf-8"))) for f in files]
    return found


def find_spec(name: str) -> ZooSpec:
    """The shipped spec called ``name`` (with or without ``.yaml``); KeyError with the closest names."""
    wanted = name.removesuffix(".yaml")
    specs = {s.name: s for s in zoo_specs()}
    if wanted not in specs:
        import difflib

        close = difflib.get_close_matches(wanted, specs, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise KeyError(f"no spec '{name}' in the zoo; {hint}see `nngraph zoo list`")
    return specs[wanted]


def copy_destination(spec: ZooSpec, dest: Path | None) -> Path:
    """``dest`` itself, ``dest/NAME.yaml`` when it is a folder, or ``./NAME.yaml`` without one."""
    if dest is None:
        return Path(f"{spec.name}.yaml")
    return dest / f"{spec.name}.yaml" if dest.is_dir() else dest
