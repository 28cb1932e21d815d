"""Diagnostics that point at the spec source: ``file:line:col: error: message``.

Every problem nngraph finds in a spec becomes a :class:`Diagnostic` carrying a
:class:`SourcePos`.  Checks append to a :class:`Diagnostics` collector so one
run reports every error in a file, not only the first; :class:`SpecError`
carries the collected list out to the CLI, which formats them as text, JSON or
GitHub Actions annotations.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator


@dataclass(frozen=True)
class SourcePos:
    """A 1-based line/column position in a spec file."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


UNKNOWN_POS = SourcePos("<unknown>")


@dataclass
class Diagnostic:
    """One problem in a spec: where it is, what is wrong, and how to fix it."""

    pos: SourcePos
    message: str
    hint: str | None = None
    severity: str = "error"
    #: where it happened when ``pos`` is inside a block: the chain of uses, innermost first
    #: (``in block 'down' (x.yaml:12:5), used as 'enc3' at x.yaml:52:5 with width=16``)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The diagnostic as a JSON-ready dict (``notes`` only when it has some)."""
        out = {
            "file": self.pos.file,
            "line": self.pos.line,
            "col": self.pos.col,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }
        return {**out, "notes": list(self.notes)} if self.notes else out


class SpecError(Exception):
    """Raised when a spec has one or more errors; carries all of them."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        first = self.diagnostics[0] if self.diagnostics else None
        super().__init__(f"{first.pos}: {first.message}" if first else "invalid spec")


@dataclass
class Diagnostics:
    """Collects diagnostics across a whole validation run."""

    items: list[Diagnostic] = field(default_factory=list)
    _seen: set = field(default_factory=set, repr=False, compare=False)
    #: the block-use chain of what is being checked now (set by the expansion and by shape inference); an error
    #: recorded meanwhile carries it as its notes
    context: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def error(self, pos: SourcePos | None, message: str, hint: str | None = None) -> None:
        """Record an error at ``pos``, once: the copies of a repeated block repeat the same mistake (the first
        copy to make it is the one its notes name)."""
        key = (pos or UNKNOWN_POS, message)
        if key in self._seen:
            return
        self._seen.add(key)
        self.items.append(Diagnostic(pos or UNKNOWN_POS, message, hint, notes=self.context))

    def extend(self, other: Iterable[Diagnostic]) -> None:
        """Record every diagnostic of ``other``."""
        self.items.extend(other)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)

    def raise_if_any(self) -> None:
        """Raise :class:`SpecError` holding every error recorded so far."""
        if self.items:
            raise SpecError(self.items)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A "did you mean" hint for a misspelled name, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


MAX_LISTED = 20


def choices_hint(word: str, choices: Iterable[str], label: str = "valid choices") -> str:
    """A hint listing the valid choices, led by the closest match if any.

    Long lists (more than :data:`MAX_LISTED`, e.g. every registered op) show only
    the nearest names; an empty list says so instead of printing a dangling label.
    """
    choices = sorted(str(c) for c in choices)
    guess = did_you_mean(word, choices)
    if not choices:
        listing = f"{label}: none"
    elif len(choices) > MAX_LISTED:
        near = difflib.get_close_matches(word, choices, n=8, cutoff=0.4)
        listing = f"{len(choices)} {label}" + (f", nearest: {', '.join(near)}" if near else "")
    else:
        listing = f"{label}: {', '.join(choices)}"
    return f"{guess} {listing}" if guess else listing


def _source_line(pos: SourcePos, cache: dict[str, list[str]]) -> str | None:
    if pos.line <= 0:
        return None
    if pos.file not in cache:
        try:
            cache[pos.file] = Path(pos.file).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            cache[pos.file] = []
    lines = cache[pos.file]
    return lines[pos.line - 1] if pos.line <= len(lines) else None


def format_text(diagnostics: Iterable[Diagnostic]) -> str:
    """Compiler-style text: location, message, the source line with a caret, a hint."""
    out: list[str] = []
    cache: dict[str, list[str]] = {}
    for d in diagnostics:
        out.append(f"{d.pos}: {d.severity}: {d.message}")
        line = _source_line(d.pos, cache)
        if line is not None:
            out.append(f"    {line}")
            out.append("    " + " " * max(d.pos.col - 1, 0) + "^")
        out.extend(f"  note: {note}" for note in d.notes)
        if d.hint:
            out.append(f"  hint: {d.hint}")
    return "\n".join(out)


def format_json(diagnostics: Iterable[Diagnostic]) -> str:
    """All diagnostics as one JSON array."""
    return json.dumps([d.to_dict() for d in diagnostics], indent=2)


def _gh_escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def format_github(diagnostics: Iterable[Diagnostic]) -> str:
    """GitHub Actions workflow commands: ``::error file=…,line=…,col=…::message``."""
    out = []
    for d in diagnostics:
        msg = d.message + "".join(f" ({note})" for note in d.notes) + (f" (hint: {d.hint})" if d.hint else "")
        out.append(f"::{d.severity} file={d.pos.file},line={d.pos.line},col={d.pos.col}::{_gh_escape(msg)}")
    return "\n".join(out)


FORMATTERS = {"text": format_text, "json": format_json, "github": format_github}
