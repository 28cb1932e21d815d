"""Checking what a checkpoint's state says before a run resumes from it.

The SHA-256 in a checkpoint catches corruption, not intent: anyone can write a file that verifies. So
what resume takes from the state is checked like any input -- the run counters in range, LoRA layers
that exist, optimizer state present where the optimizer keeps some -- and every load step reports a
failure as a :class:`~.checkpoint.CheckpointError` naming the file and the field, never as a bare
``ValueError`` / ``TypeError`` / ``KeyError`` / ``RuntimeError`` from torch or Python.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator

from .checkpoint import Checkpoint, CheckpointError

#: no run takes this many optimizer steps: a larger step is a damaged or forged state
MAX_STEP = 10**12

#: what a state's broken field can raise while being loaded (torch, numpy, random, dict access)
LOAD_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError)


def bad_field(ckpt: Checkpoint, field: str, why: str) -> CheckpointError:
    """The error for one unusable field of ``ckpt``'s state."""
    return CheckpointError(f"'{ckpt.path}': checkpoint field '{field}' {why}; the file is damaged or was "
                           "edited: resume from another checkpoint or start a new run")


@contextmanager
def loading(ckpt: Checkpoint, field: str) -> Iterator[None]:
    """Load ``field`` of ``ckpt``: any failure becomes a :class:`CheckpointError` naming the file and the field."""
    try:
        yield
    except CheckpointError:
        raise
    except LOAD_ERRORS as exc:
        raise bad_field(ckpt, field, f"cannot be loaded ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def like(ckpt: Checkpoint, name: str, saved: Any, fresh: dict[str, Any]) -> dict[str, Any]:
    """``saved`` (a ``state_dict`` from the state) has the keys of ``fresh`` (the live object's) with values of the
    same types (int and float interchangeable): what ``load_state_dict`` would otherwise take without a look."""
    if not isinstance(saved, dict) or set(saved) != set(fresh):
        keys = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise bad_field(ckpt, name, f"has {keys}, expected the keys {sorted(fresh)}")
    numbers = (int, float)
    for key, value in saved.items():
        want = fresh[key]
        if type(value) is not type(want) and not (type(value) in numbers and type(want) in numbers):
            raise bad_field(ckpt, f"{name}.{key}", f"is a {type(value).__name__}, expected {type(want).__name__}")
    return saved


def field(ckpt: Checkpoint, name: str, kind: type | tuple[type, ...] = dict) -> Any:
    """``ckpt.state[name]``, which must exist and be a ``kind``."""
    value = ckpt.state.get(name) if isinstance(ckpt.state, dict) else None
    if not isinstance(value, kind):
        raise bad_field(ckpt, name, "is missing" if value is None else f"is a {type(value).__name__}")
    return value


def _count(ckpt: Checkpoint, run: dict[str, Any], key: str, upper: int, optional: bool = False) -> int | None:
    value = run.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise bad_field(ckpt, f"run.{key}", f"is {value!r}, not a count from 0 to {upper:,}")
    return value


def run_counters(ckpt: Checkpoint, keys: tuple[str, ...] = ("bad_evals", "skipped"),
                 optional: tuple[str, ...] = ("skipped",)) -> dict[str, Any]:
    """The ``run`` record (step, best, best_step and ``keys``), checked: counts in range, ``best`` a finite number
    or null, ``best_step`` at most ``step``; a key of ``optional`` may be missing (0)."""
    run = field(ckpt, "run")
    step = _count(ckpt, run, "step", MAX_STEP)
    checked = {"step": step, "best_step": _count(ckpt, run, "best_step", step, optional=True)}
    best = run.get("best")
    if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float)) or not math.isfinite(best)):
        raise bad_field(ckpt, "run.best", f"is {best!r}, not a finite number or null")
    checked["best"] = best
    for key in keys:
        checked[key] = _count(ckpt, run, key, step, optional=key in optional) or 0
    return checked


def lora_layers(ckpt: Checkpoint) -> list[str]:
    """The ``lora`` field: the names of the layers the run wrapped with adapters (a list of strings, maybe empty)."""
    value = ckpt.state.get("lora") or []
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise bad_field(ckpt, "lora", f"is {value!r}, not a list of layer names")
    return value


def optimizer_state(ckpt: Checkpoint, opt: Any, sd: dict[str, Any], field_name: str, updates: int) -> None:
    """The optimizer state ``sd`` (unflattened from ``ckpt``) fits ``opt``: entries only for its parameters, with
    their shapes, and -- after ``updates`` > 0 real updates of an optimizer that keeps state (Adam, AdamW, SGD
    with momentum) -- not missing."""
    params = [p for group in opt.param_groups for p in group["params"]]
    for idx, entry in sd["state"].items():
        if not 0 <= idx < len(params):
            raise bad_field(ckpt, field_name, f"has state for parameter {idx}; the optimizer has {len(params)}")
        for name, value in entry.items():
            if getattr(value, "ndim", 0) and tuple(value.shape) != tuple(params[idx].shape):
                raise bad_field(ckpt, field_name, f"has {name} of shape {list(value.shape)} for parameter {idx} "
                                                  f"of shape {list(params[idx].shape)}")
    stateful = not all(group.get("momentum", 1) == 0 for group in opt.param_groups)
    if updates > 0 and stateful and not sd["state"]:
        raise bad_field(ckpt, field_name, f"holds no optimizer state after {updates} updates")


def check_resumable(ckpt: Checkpoint, graph: Any, cfg: dict[str, Any], may_change: tuple[str, ...]) -> None:
    """Refuse to resume from another architecture (naming the vars that differ when the run's record says)
    or a training configuration changed beyond ``may_change``."""
    from nngraph.run_folder import mismatch_message

    fingerprint = graph.fingerprint()
    if ckpt.state.get("fingerprint") != fingerprint:
        raise CheckpointError(mismatch_message(ckpt.path, None, graph) or
                              f"'{ckpt.path}' was saved from a different architecture (fingerprint "
                              f"{ckpt.state.get('fingerprint')}, this spec is {fingerprint})")
    saved = with_later_keys(field(ckpt, "config"))
    changed = sorted(k for k in set(saved) | set(cfg) if k not in may_change and saved.get(k) != cfg.get(k))
    if changed:
        raise CheckpointError(f"cannot resume '{ckpt.path}' exactly: the training configuration changed "
                              f"({', '.join(changed)}); start a new run with another --out")


def with_later_keys(saved: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A saved ``train`` config with the keys added to the schema after it was written, at their defaults (what
    the run that saved it did): a checkpoint from an older nngraph compares equal to the same run today."""
    from nngraph.train_keys import SCHEMA

    out = dict(saved)
    for key, f in (SCHEMA if schema is None else schema).items():
        if f.kind == "section":
            if key not in out:
                out[key] = None if f.optional_section else with_later_keys({}, f.section)
            elif isinstance(out[key], dict):
                out[key] = with_later_keys(out[key], f.section)
        elif key not in out:
            out[key] = f.default
    return out
