"""The ``train:`` section of a spec (and of ``nngraph train --config FILE``): schema, checks, defaults.

Torch-free, so ``nngraph validate`` reports mistakes in ``train:`` as
``file:line:col`` errors like any other spec error. :func:`check_train`
validates a parsed mapping (positions from :mod:`nngraph.yamlsrc`), fills in
defaults and returns a plain nested dict plus the source position of every
key, which the trainer uses to point its own later errors (a missing data
file, a LoRA pattern that matches nothing) at the line that caused them.

Every key is declared once in :data:`SCHEMA` (:mod:`nngraph.train_keys`) with its type, bounds, default
and a one-line doc; sections given as a string are shorthands
(``optimizer: adamw`` is ``optimizer: {type: adamw}``, ``data: digits`` is
``data: {builtin: digits}``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import Diagnostics, SourcePos, choices_hint, did_you_mean
from .expr import ExprError, has_expr, shown, substitute
from .params import finite_problem, range_problem
from .train_keys import BUILTINS, F, SCHEMA, TASKS
from .yamlsrc import Map


@dataclass
class TrainSection:
    """A checked ``train:`` section: values with defaults filled, and where each key was written."""

    values: dict[str, Any]
    positions: dict[str, SourcePos]
    origin: SourcePos

    def pos(self, dotted: str) -> SourcePos:
        """Where ``dotted`` (e.g. ``data.path``) or its nearest written parent is, else the section."""
        while dotted:
            if dotted in self.positions:
                return self.positions[dotted]
            dotted = dotted.rpartition(".")[0]
        return self.origin


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    for t, name in ((int, "an integer"), (float, "a number"), (str, "a string"), (list, "a list"), (dict, "a mapping")):
        if isinstance(value, t):
            return name
    return "null" if value is None else type(value).__name__


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_value(f: F, v: Any) -> tuple[Any, str | None, str | None]:
    """(normalized value, problem, hint) for one scalar/collection key."""
    if v is None:
        return (None, None, None) if f.nullable else (None, "must not be null", None)
    non_finite = finite_problem(v)
    if non_finite:
        return None, non_finite, "write a finite number (YAML's .nan and .inf are not)"
    k = f.kind
    if k == "int":
        if not _is_int(v):
            return None, f"expected an integer, got {_kind(v)} {shown(v)}", None
        return v, range_problem(v, f.min, f.max), None
    if k == "float":
        if not _num(v):
            return None, f"expected a number, got {_kind(v)} {shown(v)}", "write numbers like 3.0e-4 (YAML needs the dot)"
        return float(v), range_problem(v, f.min, f.max), None
    if k == "bool":
        return (v, None, None) if isinstance(v, bool) else (None, f"expected true or false, got {_kind(v)} {shown(v)}", None)
    if k == "tri":
        if isinstance(v, bool) or v == "auto":
            return v, None, None
        return None, f"expected true, false or auto, got {_kind(v)} {shown(v)}", None
    if k == "str":
        return (v, None, None) if isinstance(v, str) else (None, f"expected a string, got {_kind(v)} {shown(v)}", None)
    if k == "int_or_str":
        return (v, None, None) if isinstance(v, str) or _is_int(v) else (None, f"expected a name or an index, got {_kind(v)}", None)
    if k == "enum":
        if v not in f.choices:
            return None, f"expected one of {', '.join(map(str, f.choices))}, got {shown(v)}", did_you_mean(str(v), f.choices)
        return v, None, None
    if k == "float_pair":
        if not isinstance(v, list) or len(v) != 2 or not all(_num(x) for x in v):
            return None, f"expected two numbers [a, b], got {shown(v)}", None
        bad = next((b for b in (range_problem(x, f.min, f.max) for x in v) if b), None)
        return [float(x) for x in v], bad, None
    if k == "str_list":
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v) or not v:
            return None, f"expected a list of name patterns, got {shown(v)}", None
        return list(v), None, None
    if k in ("str_map", "num_map"):
        if not isinstance(v, dict):
            return None, f"expected a mapping, got {_kind(v)}", None
        for key, val in v.items():
            if not isinstance(key, str):
                return None, f"keys must be names, got {shown(key)}", None
            if k == "str_map" and not isinstance(val, str):
                return None, f"value of '{key}' must be a name, got {_kind(val)} {shown(val)}", None
            if k == "num_map" and not _num(val):
                return None, f"value of '{key}' must be a number (a weight), got {_kind(val)} {shown(val)}", None
        return {str(a): (float(b) if k == "num_map" else b) for a, b in v.items()}, None, None
    raise AssertionError(k)  # pragma: no cover


def _resolve(v: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(v, str) and has_expr(v):
        return substitute(v, variables)
    if isinstance(v, list):
        return [_resolve(x, variables) for x in v]
    return v


def _check_section(raw: Any, schema: dict[str, F], prefix: str, pos: SourcePos, diag: Diagnostics,
                   positions: dict[str, SourcePos], variables: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(raw, dict):
        diag.error(pos, f"'{prefix.rstrip('.') or 'train'}' must be a mapping, got {_kind(raw)}")
        raw = {}
    for key in raw:
        kpos = raw.pos_of_key(key) if isinstance(raw, Map) else pos
        if key not in schema:
            diag.error(kpos, f"unknown key '{key}' in '{prefix.rstrip('.') or 'train'}'",
                       choices_hint(str(key), schema, "keys"))
    for key, f in schema.items():
        dotted = prefix + key
        present = isinstance(raw, dict) and key in raw
        vpos = raw.pos_of(key) if isinstance(raw, Map) and present else pos
        if present:
            positions[dotted] = vpos
        value = raw.get(key) if present else None
        try:
            value = _resolve(value, variables)
        except ExprError as exc:
            diag.error(vpos, f"train.{dotted}: {exc}", getattr(exc, "hint", None))
            out[key] = f.default
            continue
        if f.kind == "section":
            if f.optional_section and (not present or value is False):
                out[key] = None
                continue
            if isinstance(value, (str, int, float)) and not isinstance(value, bool) and f.shorthand:
                value = Map({f.shorthand: value}, pos=vpos)
                value.value_pos[f.shorthand] = vpos
            elif value is None or value is True:
                value = {}
            out[key] = _check_section(value, f.section, dotted + ".", vpos, diag, positions, variables)
            continue
        if not present or value is None:
            out[key] = f.default if not isinstance(f.default, (list, dict)) else type(f.default)(f.default)
            continue
        norm, problem, hint = _check_value(f, value)
        if problem:
            diag.error(vpos, f"train.{dotted} {problem}" if problem.startswith("must") else f"train.{dotted}: {problem}",
                       hint)
            out[key] = f.default
        else:
            out[key] = norm
    return out


def check_train(raw: Any, diag: Diagnostics, pos: SourcePos, variables: Mapping[str, Any] | None = None,
                graph: Any = None) -> TrainSection:
    """Validate a ``train:`` mapping; errors go to ``diag`` at the key or value that is wrong.

    With ``graph`` (an :class:`nngraph.ir.Graph`) names are checked against it
    too: ``output``, ``inputs``, ``state`` and the ``loss.aux`` patterns.
    """
    positions: dict[str, SourcePos] = {}
    pos = getattr(raw, "pos", pos) if isinstance(raw, Map) else pos
    values = _check_section(raw if raw is not None else {}, SCHEMA, "", pos, diag, positions, variables or {})
    sec = TrainSection(values, positions, pos)
    _cross_checks(sec, diag)
    if graph is not None:
        check_against_graph(sec, graph, diag)
        from .spec.networks import check_roles

        check_roles(sec, graph, diag)
    return sec


def _cross_checks(sec: TrainSection, diag: Diagnostics) -> None:
    v = sec.values
    if v["steps"] is not None and v["epochs"] is not None:
        diag.error(sec.pos("epochs"), "give train.steps or train.epochs, not both", "remove one of them")
    data = v["data"]
    if data["builtin"] is not None and data["path"] is not None:
        diag.error(sec.pos("data.path"), "give data.builtin or data.path, not both", "remove one of them")
    sched = v["schedule"]
    if sched["min_lr"] > v["optimizer"]["lr"]:
        diag.error(sec.pos("schedule.min_lr"),
                   f"train.schedule.min_lr must be <= train.optimizer.lr, got {sched['min_lr']} > {v['optimizer']['lr']}")
    frac = (data["val_fraction"] or 0.0) + (data["test_fraction"] or 0.0)
    if frac >= 1.0:
        diag.error(sec.pos("data.val_fraction"), f"val_fraction + test_fraction must be < 1, got {frac:g}",
                   "leave some data to train on")
    diff = v["diffusion"]
    if diff["schedule"] == "linear" and diff["beta_start"] >= diff["beta_end"]:
        diag.error(sec.pos("diffusion.beta_start"),
                   f"diffusion.beta_start must be below beta_end: expected < {diff['beta_end']}, got {diff['beta_start']}")


def output_names(graph: Any) -> list[str]:
    """Every ``node.output`` name of the graph's multi-output nodes plus the graph's own outputs."""
    names = list(graph.outputs)
    for node in graph.nodes.values():
        names += [f"{node.name}.{o}" for o in node.outputs if len(node.outputs) > 1]
    return names


def match_aux(pattern: str, graph: Any) -> list[str]:
    """Graph outputs or ``node.output`` values a ``loss.aux`` key selects."""
    if pattern in graph.outputs:
        return [pattern]
    return [n for n in output_names(graph) if "." in n and fnmatch.fnmatchcase(n, pattern)]


def check_against_graph(sec: TrainSection, graph: Any, diag: Diagnostics,
                        hint_for: Callable[[str, list[str], str], str] = choices_hint) -> None:
    """Names in the section must exist in the graph."""
    v = sec.values
    if v["output"] is not None and v["output"] not in graph.outputs:
        diag.error(sec.pos("output"), f"train.output '{v['output']}' is not an output of the graph",
                   hint_for(v["output"], list(graph.outputs), "outputs"))
    for key in v["inputs"]:
        if key not in graph.inputs:
            diag.error(sec.pos("inputs"), f"train.inputs: '{key}' is not an input of the graph",
                       hint_for(key, list(graph.inputs), "inputs"))
    for key, out in (v["state"] or {}).items():
        if key not in graph.inputs:
            diag.error(sec.pos("state"), f"train.state: '{key}' is not an input of the graph",
                       hint_for(key, list(graph.inputs), "inputs"))
        if out not in graph.outputs:
            diag.error(sec.pos("state"), f"train.state: '{out}' is not an output of the graph",
                       hint_for(out, list(graph.outputs), "outputs"))
    for pattern in v["loss"]["aux"]:
        if not match_aux(pattern, graph):
            diag.error(sec.pos("loss.aux"), f"train.loss.aux: '{pattern}' matches no graph output or node output",
                       hint_for(pattern, output_names(graph), "outputs"))


def section_from(data: Any) -> Any:
    """The train mapping of a ``--config`` file: its ``train:`` key if it has one, else the whole file."""
    if isinstance(data, dict) and "train" in data:
        return data["train"]
    return data


def merge(base: Any, over: Any) -> Any:
    """``over`` on top of ``base`` (nested mappings merged key by key), keeping source positions."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    out = Map(pos=getattr(over, "pos", None) or getattr(base, "pos", None))
    for src in (base, over):
        if isinstance(src, Map):
            out.key_pos.update(src.key_pos)
            out.value_pos.update(src.value_pos)
    for k, val in base.items():
        out[k] = val
    for k, val in over.items():
        out[k] = merge(out[k], val) if k in out and isinstance(out[k], dict) and isinstance(val, dict) else val
    return out


__all__ = ["BUILTINS", "SCHEMA", "TASKS", "TrainSection", "check_against_graph", "check_train", "match_aux",
           "merge", "output_names", "section_from"]
