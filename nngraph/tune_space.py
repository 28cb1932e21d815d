"""The search space of ``nngraph tune``: ``--space KEY=DIST(ARGS)`` parsed into :class:`Param`\\ s.

``KEY`` is what ``--set`` takes (``train.optimizer.lr``, a var as ``vars.d_model`` or ``d_model``); ``DIST`` is a
name of :data:`DISTRIBUTIONS`: ``uniform(lo, hi)``, ``loguniform(lo, hi)`` (uniform in log lo..log hi),
``int(lo, hi)`` (whole numbers lo..hi, both ends in), ``choice(a, b, ...)`` (YAML values). A mistake is a
:class:`SpaceError` that points at the character of the option where it is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from nngraph.yamlsrc import load_yaml_text

_FORM = re.compile(r"^\s*([A-Za-z_][\w.*-]*)\s*=\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$")


class SpaceError(ValueError):
    """A ``--space`` option that does not parse; ``col`` is the 1-based character of the option it is at."""

    def __init__(self, text: str, col: int, message: str):
        super().__init__(f"--space '{text}':{col}: {message}")
        self.col = col


def _range(kind: str) -> Callable[[str, list[Any]], None]:
    def check(text: str, args: list[Any]) -> None:
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise ValueError(f"{kind} takes two numbers (lo, hi), got {len(args)} argument(s)")
        if kind == "int" and not all(float(a).is_integer() for a in args):
            raise ValueError("int takes two whole numbers")
        if not args[0] < args[1]:
            raise ValueError(f"lo must be below hi, got {args[0]} and {args[1]}")
        if kind == "loguniform" and args[0] <= 0:
            raise ValueError(f"loguniform needs lo > 0, got {args[0]}")

    return check


def _choices(text: str, args: list[Any]) -> None:
    if not args:
        raise ValueError("choice takes at least one value")
    if not all(a is None or isinstance(a, (int, float, str, bool)) for a in args):
        raise ValueError("choice takes plain values (numbers, text, true/false, null), not lists or mappings")


#: name -> the check of its arguments; the sampler (optuna's ``trial.suggest_*``) is chosen by the same name in
#: :func:`Param.suggest`
DISTRIBUTIONS: dict[str, Callable[[str, list[Any]], None]] = {
    "uniform": _range("uniform"), "loguniform": _range("loguniform"), "int": _range("int"), "choice": _choices,
}


@dataclass(frozen=True)
class Param:
    """One searched key: ``key`` (as ``--set`` takes it), the distribution and its arguments."""

    key: str
    dist: str
    args: tuple[Any, ...]

    def suggest(self, trial: Any) -> Any:
        """A value for ``trial`` (an ``optuna.Trial``)."""
        lo, hi = (self.args + (None, None))[:2]
        if self.dist == "choice":
            return trial.suggest_categorical(self.key, list(self.args))
        if self.dist == "int":
            return trial.suggest_int(self.key, int(lo), int(hi))
        return trial.suggest_float(self.key, float(lo), float(hi), log=self.dist == "loguniform")

    def override(self, value: Any) -> str:
        """The ``--set`` text for ``value`` (``vars.d_model`` sets the var ``d_model``)."""
        key = self.key[len("vars."):] if self.key.startswith("vars.") else self.key
        if isinstance(value, float) and math.isfinite(value):
            return f"{key}={value!r}"
        return f"{key}={value}"


def parse_space(text: str) -> Param:
    """``train.optimizer.lr=loguniform(1e-4,1e-2)`` -> :class:`Param`; raises :class:`SpaceError`."""
    m = _FORM.match(text)
    if m is None:
        col = text.find("=") + 2 if "=" in text else 1
        raise SpaceError(text, col, "expected KEY=DIST(ARGS), e.g. train.optimizer.lr=loguniform(1e-4,1e-2); "
                         f"DIST: {', '.join(DISTRIBUTIONS)}")
    key, dist, raw = m.group(1), m.group(2), m.group(3)
    if dist not in DISTRIBUTIONS:
        raise SpaceError(text, m.start(2) + 1, f"unknown distribution '{dist}'; use one of: {', '.join(DISTRIBUTIONS)}")
    try:
        args = load_yaml_text(f"[{raw}]", "--space") if raw.strip() else []
    except Exception as exc:  # noqa: BLE001 - any YAML problem is the argument list's
        raise SpaceError(text, m.start(3) + 1, f"arguments are not valid values: {exc}") from None
    try:
        DISTRIBUTIONS[dist](text, list(args))
    except ValueError as exc:
        raise SpaceError(text, m.start(3) + 1, str(exc)) from None
    return Param(key, dist, tuple(args))
