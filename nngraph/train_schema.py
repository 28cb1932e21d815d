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
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .errors import Diagnostics, SourcePos, choices_hint
from .expr import ExprError, has_expr, substitute
from .train_keys import BUILTINS, F, SCHEMA, TASK_ROLES, TASKS
from .values import TRAIN_VOICE, check, kind_article
from .yamlsrc import Map

if TYPE_CHECKING:
    from .ir import Graph


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


def _check_value(f: F, v: Any) -> tuple[Any, str | None, str | None]:
    """(normalized value, problem, hint) for one scalar/collection key, through the kinds table of :mod:`.values`."""
    if v is None:
        return (None, None, None) if f.nullable else (None, "must not be null", None)
    norm, problems, hint = check(f, v, TRAIN_VOICE)
    if problems:
        return None, problems[0][1], hint
    return norm, None, None


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
        diag.error(pos, f"'{prefix.rstrip('.') or 'train'}' must be a mapping, got {kind_article(raw)}")
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


def check_roles(sec: Any, graph: Graph, diag: Diagnostics) -> None:
    """``train.networks`` (role -> network) against the task's roles and the spec's networks."""
    task = sec.values.get("task")
    given = dict(sec.values.get("networks") or {})
    if not graph.networks:
        if task in TASK_ROLES and task != "vae":  # vae also trains one graph with a kl output
            roles = TASK_ROLES[task]
            diag.error(sec.pos("task"), f"task '{task}' trains several networks ({', '.join(roles)}), "
                       "but this spec declares no 'networks'",
                       f"declare networks: {{{', '.join(f'{r}: {{...}}' for r in roles)}}}")
        return
    if task == "auto":
        diag.error(sec.pos("task"), "a spec with networks needs train.task", f"one of {', '.join(TASK_ROLES)}")
        return
    if task not in TASK_ROLES:
        diag.error(sec.pos("task"), f"task '{task}' trains one graph, but this spec declares networks "
                   f"({', '.join(graph.networks)})", f"tasks for networks: {', '.join(TASK_ROLES)}")
        return
    roles = TASK_ROLES[task]
    for role in given:
        if role not in roles:
            diag.error(sec.pos("networks"), f"train.networks: task '{task}' has no role '{role}'",
                       choices_hint(role, roles, "roles"))
    for role in roles:
        net = given.get(role, role)
        if net not in graph.networks:
            diag.error(sec.pos("networks" if role in given else "task"),
                       f"task '{task}' needs a network for its role '{role}': the spec has no network '{net}'",
                       f"name a network with train.networks: {{{role}: NAME}}; networks: {', '.join(graph.networks)}")
