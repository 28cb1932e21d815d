"""The initializers a spec's ``init:`` may name, and the checks on them that need no tensors.

The catalog (names, arguments with their defaults, enums, which need >= 2 dims) lives here so that
``validate`` checks an ``init:`` as the compiler will; the torch back end (compilers/torch/init.py)
adds only how each one is applied and the checks that need the parameters' shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import choices_hint

NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                  "sigmoid", "tanh", "relu", "leaky_relu", "selu")
REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()
_KAIMING = {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}
_KAIMING_ENUMS = {"mode": ("fan_in", "fan_out"), "nonlinearity": NONLINEARITIES}

@dataclass(frozen=True)
class InitializerDef:
    """One initializer's arguments (with defaults; :data:`REQUIRED` when it has none)."""

    name: str
    args: dict[str, Any]
    needs_2d: bool = False
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)


INITIALIZER_DEFS: dict[str, InitializerDef] = {i.name: i for i in (
    InitializerDef("zeros", {}),
    InitializerDef("ones", {}),
    InitializerDef("constant", {"value": REQUIRED}),
    InitializerDef("normal", {"mean": 0.0, "std": 1.0}),
    InitializerDef("uniform", {"a": 0.0, "b": 1.0}),
    InitializerDef("trunc_normal", {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0}),
    InitializerDef("xavier_uniform", {"gain": 1.0}, needs_2d=True),
    InitializerDef("xavier_normal", {"gain": 1.0}, needs_2d=True),
    InitializerDef("kaiming_uniform", dict(_KAIMING), needs_2d=True, enums=_KAIMING_ENUMS),
    InitializerDef("kaiming_normal", dict(_KAIMING), needs_2d=True, enums=_KAIMING_ENUMS),
    InitializerDef("orthogonal", {"gain": 1.0}, needs_2d=True),
)}


class InitError(ValueError):
    """A bad initializer; reported at the node's ``init``."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


def parse_initializer(value: Any) -> tuple[str, dict[str, Any]]:
    """``"zeros"``, ``{type: normal, std: 0.02}`` or ``("normal", {"std": 0.02})`` -> a checked (name, kwargs)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        name, args = value
    elif isinstance(value, str):
        name, args = value, {}
    elif isinstance(value, Mapping) and "type" in value:
        name, args = value["type"], {k: v for k, v in value.items() if k != "type"}
    else:
        raise InitError(f"an initializer is a name or a mapping with 'type', got {value!r}",
                        "e.g. init: xavier_uniform, or init: {type: normal, std: 0.02}")
    if not isinstance(name, str) or name not in INITIALIZER_DEFS:
        raise InitError(f"unknown initializer {name!r}", choices_hint(str(name), INITIALIZER_DEFS, "initializers"))
    init = INITIALIZER_DEFS[name]
    out: dict[str, Any] = {}
    for key, arg in args.items():
        if key not in init.args:
            raise InitError(f"unknown argument '{key}' for initializer '{name}'",
                            f"arguments of {name}: {', '.join(init.args) or 'none'}")
        if key in init.enums:
            if arg not in init.enums[key]:
                raise InitError(f"{name}: {key} must be one of {', '.join(init.enums[key])}, got {arg!r}")
        elif isinstance(arg, bool) or not isinstance(arg, (int, float)) or not math.isfinite(arg):
            raise InitError(f"{name}: {key} must be a finite number, got {arg!r}")
        out[key] = arg
    missing = [k for k, v in init.args.items() if v is REQUIRED and k not in out]
    if missing:
        raise InitError(f"initializer '{name}' needs {', '.join(missing)}", f"e.g. {{type: {name}, {missing[0]}: 0.0}}")
    full = {k: v for k, v in init.args.items() if v is not REQUIRED} | out
    if full.get("std", 1.0) <= 0:
        raise InitError(f"{name}: std must be > 0, got {full['std']}")
    if name in ("uniform", "trunc_normal") and not full["a"] < full["b"]:
        raise InitError(f"{name}: needs a < b, got a={full['a']}, b={full['b']}")
    return name, out


def is_single(user: Any) -> bool:
    """Whether an ``init:`` is one initializer (for the node's weights), not a mapping param -> initializer."""
    return isinstance(user, str) or isinstance(user, Mapping) and "type" in user


def check_init(user: Any) -> None:
    """The checks on a node's ``init:`` that need no parameter shapes; raises :class:`InitError`.

    Which parameters a key names, and which initializers need 2-d ones, the compiler checks.
    """
    if is_single(user):
        parse_initializer(user)
    elif isinstance(user, Mapping):
        for value in user.values():
            parse_initializer(value)
    else:
        raise InitError(f"init must be an initializer or a mapping of parameter -> initializer, got {user!r}",
                        "e.g. init: xavier_uniform, or init: {weight: orthogonal, bias: zeros}")
