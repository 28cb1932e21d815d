"""Resolving ``${...}`` expressions inside spec values, with positions for errors."""

from __future__ import annotations

from typing import Any, Callable

from ..errors import Diagnostics, SourcePos, choices_hint
from ..expr import ExprError, has_expr, substitute
from ..yamlsrc import Map, Seq


#: ``resolve_at(..., default=lambda: UNRESOLVED)`` tells a failed expression (already reported) from a null value.
UNRESOLVED: Any = type("Unresolved", (), {"__repr__": lambda self: "UNRESOLVED"})()


class Scope:
    """Names visible to expressions: vars, block params, the copy ``index``.

    Values may themselves be unresolved expressions; they are resolved on first
    use, so vars can refer to each other in any order (cycles are errors).
    """

    def __init__(self, values: dict[str, Any], parent: "Scope | None" = None,
                 positions: dict[str, SourcePos] | None = None):
        self._raw = dict(values)
        self._done: dict[str, Any] = {}
        self._active: dict[str, None] = {}  # names being resolved, in order (for the cycle message)
        self._failed: set[str] = set()
        self.parent = parent
        self.positions = positions or {}

    def names(self) -> set[str]:
        """Every name visible from this scope."""
        return set(self._raw) | (self.parent.names() if self.parent else set())

    def child(self, values: dict[str, Any], positions: dict[str, SourcePos] | None = None) -> "Scope":
        """A nested scope whose names shadow this one's."""
        return Scope(values, self, positions)

    def mark_failed(self, names: set[str]) -> None:
        """Names whose values failed to resolve where they were given (already reported)."""
        self._failed |= {n for n in names if n in self._raw}

    def lookup(self, name: str) -> Any:
        """The resolved value of ``name``; raises :class:`ExprError` if unknown or cyclic.

        A name whose value failed once raises a *silent* error afterwards: the
        failure was reported where it first happened, its other uses are not
        separate mistakes.
        """
        if name in self._done:
            return self._done[name]
        if name in self._raw:
            if name in self._failed:
                raise _silent(f"var '{name}' has an error")
            if name in self._active:
                if self.parent is not None and name in self.parent.names():
                    # `params: {heads: ${heads}}` means "default to the outer heads"
                    return self.parent.lookup(name)
                chain = list(self._active)[list(self._active).index(name):] + [name]
                if len(chain) == 2:
                    raise ExprError(f"var '{name}' refers to itself", "a var cannot be defined by its own value")
                raise ExprError(f"cyclic vars: {' -> '.join(chain)}", "break the cycle between these vars")
            self._active[name] = None
            try:
                value = resolve_any(self._raw[name], self)
            except ExprError:
                self._failed.add(name)
                raise
            finally:
                self._active.pop(name, None)
            self._done[name] = value
            return value
        if self.parent is not None and name in self.parent.names():
            return self.parent.lookup(name)
        raise ExprError(f"unknown name '{name}' in expression", choices_hint(name, self.names(), "defined names"))

    def resolved(self) -> dict[str, Any]:
        """All of this scope's own names, resolved (errors propagate)."""
        return {k: self.lookup(k) for k in self._raw}


def _silent(message: str) -> ExprError:
    err = ExprError(message)
    err.silent = True  # type: ignore[attr-defined]
    return err


def resolve_any(value: Any, scope: Scope) -> Any:
    """Resolve every expression in ``value``; raises :class:`ExprError` on the first bad one."""
    if isinstance(value, str):
        return substitute(value, scope.lookup) if has_expr(value) else value
    if isinstance(value, dict):
        out = Map(pos=getattr(value, "pos", None))
        if isinstance(value, Map):
            out.key_pos, out.value_pos = dict(value.key_pos), dict(value.value_pos)
        for k, v in value.items():
            out[k] = resolve_any(v, scope)
        return out
    if isinstance(value, list):
        out_list = Seq((resolve_any(v, scope) for v in value), pos=getattr(value, "pos", None))
        if isinstance(value, Seq):
            out_list.item_pos = list(value.item_pos)
        return out_list
    return value


def resolve_at(value: Any, scope: Scope, pos: SourcePos, diag: Diagnostics,
               where: str = "", default: Callable[[], Any] | None = None) -> Any:
    """Resolve ``value``; on failure record an error at ``pos`` and return ``default()``/None."""
    try:
        return resolve_any(value, scope)
    except ExprError as exc:
        if not getattr(exc, "silent", False):
            prefix = f"{where}: " if where else ""
            diag.error(pos, f"{prefix}{exc}", exc.hint)
    except RecursionError:
        diag.error(pos, f"{where}: expressions nested too deeply")
    return default() if default else None
