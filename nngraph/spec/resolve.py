"""Resolving ``${...}`` expressions inside spec values, with positions for errors."""

from __future__ import annotations

from typing import Any, Callable

from ..errors import Diagnostics, SourcePos, choices_hint
from ..expr import ExprError, has_expr, names_in, substitute
from ..yamlsrc import Map, Seq


MAX_CHAIN_SHOWN = 12

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
                raise _cycle_error(list(self._active)[list(self._active).index(name):] + [name])
            if not self._active:
                self._resolve_dependencies_first(name)
            return self._resolve(name)
        if self.parent is not None and name in self.parent.names():
            return self.parent.lookup(name)
        raise ExprError(f"unknown name '{name}' in expression", choices_hint(name, self.names(), "defined names"))

    def _resolve(self, name: str) -> Any:
        """Resolve one of this scope's own names, remembering the value (or the failure)."""
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

    def _resolve_dependencies_first(self, name: str) -> None:
        """Resolve the vars ``name`` depends on, deepest first, so resolving ``name`` itself recurses one level.

        A chain of 11,000 vars resolved by recursion alone overflows the stack at every link (18 s of
        RecursionErrors); in dependency order each var finds the ones it names already done. A cycle is
        reported as a cycle, from the walk.
        """
        try:
            for dep in self._dependency_order(name):
                self._resolve(dep)
        except ExprError:
            self._failed.add(name)
            raise

    def _dependency_order(self, root: str) -> list[str]:
        """This scope's unresolved names below ``root`` in post-order (``root`` itself left out), by an
        iterative depth-first walk; a back edge is a cycle unless the name is the outer scope's one."""
        order: list[str] = []
        done: set[str] = set()
        path: dict[str, None] = {root: None}
        stack = [(root, iter(self._own_names_in(root)))]
        while stack:
            name, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                stack.pop()
                path.pop(name)
                order.append(name)
                done.add(name)
            elif dep in path:
                if self.parent is None or dep not in self.parent.names():
                    self._failed.update(path)
                    raise _cycle_error(list(path)[list(path).index(dep):] + [dep])
            elif dep not in done:
                path[dep] = None
                stack.append((dep, iter(self._own_names_in(dep))))
        return order[:-1]

    def _own_names_in(self, name: str) -> list[str]:
        """The names of this scope, not yet resolved or failed, that the value of ``name`` refers to."""
        return [n for n in names_in(self._raw[name]) if n in self._raw and n not in self._done and n not in self._failed]

    def resolved(self) -> dict[str, Any]:
        """All of this scope's own names, resolved (errors propagate)."""
        return {k: self.lookup(k) for k in self._raw}


def _cycle_error(chain: list[str]) -> ExprError:
    """The error for a cycle of vars (``chain`` starts and ends with the same name)."""
    if len(chain) == 2:
        return ExprError(f"var '{chain[0]}' refers to itself", "a var cannot be defined by its own value")
    if len(chain) > MAX_CHAIN_SHOWN:  # a cycle through 11,000 vars is one line, not 100 KB
        half = MAX_CHAIN_SHOWN // 2
        shown = chain[:half] + [f"... ({len(chain) - 2 * half:,} more)"] + chain[-half:]
    else:
        shown = chain
    return ExprError(f"cyclic vars: {' -> '.join(shown)}", "break the cycle between these vars")


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
