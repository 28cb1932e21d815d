"""The training configuration of one run: the spec's ``train:`` section, a ``--config`` file, ``--set train.*``
overrides and command-line flags, merged in that order and checked by :mod:`nngraph.train_schema`.

Every value keeps the position it was written at (a spec line, a config-file
line, ``--set train.steps=5``, ``--steps 5``), so a mistake found at any point
of the run -- by the schema, or later by the trainer (a data file that does not
exist, a LoRA pattern that matches nothing) -- is reported as ``file:line:col``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nngraph.errors import Diagnostic, Diagnostics, SourcePos, SpecError
from nngraph.ir import Graph
from nngraph.spec import load_spec
from nngraph.spec.overrides import parse_override
from nngraph.train_schema import TrainSection, check_train, merge, section_from
from nngraph.yamlsrc import Map, load_yaml_file


@dataclass
class RunConfig:
    """A loaded spec and its checked train section."""

    graph: Graph
    spec_path: Path
    train: TrainSection
    overrides: list[str] = field(default_factory=list)  # the --set overrides, recorded in the run folder
    dataset: str | None = None  # --dataset MODULE:FUNCTION: the user's own Dataset (never named by a spec)

    @property
    def values(self) -> dict[str, Any]:
        return self.train.values

    def get(self, dotted: str) -> Any:
        """``get("optimizer.lr")``."""
        v: Any = self.train.values
        for part in dotted.split("."):
            v = v[part]
        return v

    def error(self, dotted: str, message: str, hint: str | None = None) -> SpecError:
        """A :class:`SpecError` at the position ``dotted`` was written (for ``raise``)."""
        return SpecError([Diagnostic(self.train.pos(dotted), message, hint)])


def _flag(data: Map, key: str, value: Any, text: str) -> None:
    data[key] = value
    data.key_pos[key] = data.value_pos[key] = SourcePos(text)


def _set_dotted(root: Map, path: list[str], value: Any, pos: SourcePos, diag: Diagnostics) -> None:
    target = root
    for part in path[:-1]:
        nxt = target.get(part)
        if nxt is None or isinstance(nxt, str):  # a shorthand (optimizer: adamw) becomes a mapping
            nxt = Map({} if nxt is None else {"_shorthand": nxt}, pos=pos)
            target[part] = nxt
            target.value_pos[part] = pos
        if not isinstance(nxt, dict):
            diag.error(pos, f"cannot set 'train.{'.'.join(path)}': '{part}' is not a mapping")
            return
        target = nxt
    target[path[-1]] = value
    if isinstance(target, Map):
        target.key_pos[path[-1]] = target.value_pos[path[-1]] = pos


_SHORTHAND = {"optimizer": "type", "schedule": "type", "data": "builtin", "distributed": "strategy"}


def _expand_shorthands(raw: Map) -> None:
    for key, field in _SHORTHAND.items():
        val = raw.get(key)
        if isinstance(val, Map) and "_shorthand" in val:
            val.setdefault(field, val.pop("_shorthand"))


def load_run_config(spec: str | Path, overrides: list[str] | None = None, config: str | Path | None = None,
                    steps: int | None = None, epochs: int | None = None, seed: int | None = None,
                    data: str | None = None, out_of_spec: dict[str, Any] | None = None) -> RunConfig:
    """Load and validate the spec and its training configuration; raises :class:`SpecError` with every error."""
    spec = Path(spec)
    overrides = list(overrides or [])
    train_sets = [o for o in overrides if o.strip().startswith("train.")]
    graph = load_spec(spec, [o for o in overrides if o not in train_sets])
    raw: Any = graph.train if graph.train is not None else Map(pos=SourcePos(str(spec), 1, 1))
    if config is not None:
        cfg_data = load_yaml_file(config, display_name=str(config))
        raw = merge(raw, section_from(cfg_data))
    if not isinstance(raw, Map):
        raw = merge(Map(pos=SourcePos(str(config or spec), 1, 1)), raw) if isinstance(raw, dict) else raw
    diag = Diagnostics()
    if isinstance(raw, Map):
        for text in train_sets:
            try:
                key, value, pos = parse_override(text)
            except SpecError as err:
                diag.extend(err.diagnostics)
                continue
            _set_dotted(raw, key.split(".")[1:], value, pos, diag)
        _expand_shorthands(raw)
        for key, value, flag in (("steps", steps, "--steps"), ("epochs", epochs, "--epochs"), ("seed", seed, "--seed")):
            if value is not None:
                _flag(raw, key, value, f"{flag} {value}")
                if key in ("steps", "epochs"):  # a flag replaces the other stopping rule of the config
                    raw.pop("epochs" if key == "steps" else "steps", None)
        if data is not None:
            section = raw.get("data") if isinstance(raw.get("data"), Map) else Map(pos=SourcePos(f"--data {data}"))
            copy = Map(section, pos=section.pos)
            copy.key_pos, copy.value_pos = dict(section.key_pos), dict(section.value_pos)
            section = copy
            for k in ("builtin", "path", "format"):
                section.pop(k, None)
            from nngraph.train_schema import BUILTINS
            is_file = Path(data).exists() or not (data in BUILTINS or data.startswith("builtin:"))
            _flag(section, "path" if is_file else "builtin",
                  str(Path(data).resolve()) if is_file else data.removeprefix("builtin:"), f"--data {data}")
            raw["data"] = section
            raw.value_pos["data"] = SourcePos(f"--data {data}")
        for key, value in (out_of_spec or {}).items():
            _flag(raw, key, value, f"--{key}")
    section = check_train(raw, diag, getattr(raw, "pos", SourcePos(str(spec), 1, 1)), graph.vars, graph)
    errors = [d for d in diag if d.severity == "error"]
    if errors:
        raise SpecError(errors)
    return RunConfig(graph, spec, section, overrides)
