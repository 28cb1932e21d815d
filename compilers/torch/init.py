"""Parameter initialization: the initializers a spec may name, their checks, and how they apply.

Every op implementation gives default initializers for its parameters (see
the ops' docstrings: He/Kaiming before a ReLU, Xavier/Glorot otherwise,
normal(0, 0.02) for transformer FFNs and embeddings); a node overrides them in
the spec with its ``init`` key:

* a single initializer applies to the node's *weights* (parameters whose last
  name part starts with ``weight``, or the tensor of a ``parameter`` node)::

      - {name: fc, op: linear, in: x, out: 10, init: xavier_normal}
      - {name: fc, op: linear, in: x, out: 10, init: {type: normal, std: 0.01}}

* a mapping ``{param: initializer}``; a key names a parameter exactly or by its
  dotted suffix (``bias`` covers ``up.bias`` and ``down.bias`` of an mlp)::

      - {name: mlp, op: mlp, in: x, hidden: 64, init: {up.weight: orthogonal, bias: {type: constant, value: 0.1}}}

An initializer is a name or a mapping ``{type: NAME, ARG: VALUE, ...}``:

==================  ======================================================
``zeros``, ``ones``
``constant``        ``value`` (required)
``normal``          ``mean`` = 0, ``std`` = 1
``uniform``         ``a`` = 0, ``b`` = 1 (bounds)
``trunc_normal``    ``mean`` = 0, ``std`` = 1, ``a`` = -2, ``b`` = 2 (absolute bounds)
``xavier_uniform``  ``gain`` = 1 (Glorot; needs >= 2 dims)
``xavier_normal``   ``gain`` = 1
``kaiming_uniform`` ``a`` = 0, ``mode`` = fan_in, ``nonlinearity`` = relu (He; needs >= 2 dims)
``kaiming_normal``  same as kaiming_uniform
``orthogonal``      ``gain`` = 1 (needs >= 2 dims)
==================  ======================================================

The defaults are PyTorch's ``torch.nn.init`` defaults, except kaiming's
nonlinearity (relu: He et al.'s setting; seed 000, "He initialization").
Problems are :class:`nngraph.errors.SpecError` diagnostics at the node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from nngraph.errors import Diagnostic, SourcePos, SpecError, choices_hint

from .registry import InitSpec

_NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                   "sigmoid", "tanh", "relu", "leaky_relu", "selu")
_REQUIRED = object()


@dataclass(frozen=True)
class Initializer:
    """One initializer: its arguments with defaults, and how to apply it."""

    name: str
    args: dict[str, Any]
    apply: Callable[..., Any]
    needs_2d: bool = False
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _fn(f: Callable[..., Any]) -> Callable[..., Any]:
    return lambda t, **kw: f(t, **kw)


INITIALIZERS: dict[str, Initializer] = {i.name: i for i in (
    Initializer("zeros", {}, _fn(nn.init.zeros_)),
    Initializer("ones", {}, _fn(nn.init.ones_)),
    Initializer("constant", {"value": _REQUIRED}, lambda t, value: nn.init.constant_(t, value)),
    Initializer("normal", {"mean": 0.0, "std": 1.0}, _fn(nn.init.normal_)),
    Initializer("uniform", {"a": 0.0, "b": 1.0}, _fn(nn.init.uniform_)),
    Initializer("trunc_normal", {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0}, _fn(nn.init.trunc_normal_)),
    Initializer("xavier_uniform", {"gain": 1.0}, _fn(nn.init.xavier_uniform_), needs_2d=True),
    Initializer("xavier_normal", {"gain": 1.0}, _fn(nn.init.xavier_normal_), needs_2d=True),
    Initializer("kaiming_uniform", {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}, _fn(nn.init.kaiming_uniform_),
                needs_2d=True, enums={"mode": ("fan_in", "fan_out"), "nonlinearity": _NONLINEARITIES}),
    Initializer("kaiming_normal", {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}, _fn(nn.init.kaiming_normal_),
                needs_2d=True, enums={"mode": ("fan_in", "fan_out"), "nonlinearity": _NONLINEARITIES}),
    Initializer("orthogonal", {"gain": 1.0}, _fn(nn.init.orthogonal_), needs_2d=True),
)}


class InitError(ValueError):
    """A bad initializer; the compiler reports it at the node."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


def parse_initializer(value: Any) -> InitSpec:
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
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise InitError(f"unknown initializer {name!r}", choices_hint(str(name), INITIALIZERS, "initializers"))
    init = INITIALIZERS[name]
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
    missing = [k for k, v in init.args.items() if v is _REQUIRED and k not in out]
    if missing:
        raise InitError(f"initializer '{name}' needs {', '.join(missing)}", f"e.g. {{type: {name}, {missing[0]}: 0.0}}")
    full = {k: v for k, v in init.args.items() if v is not _REQUIRED} | out
    if full.get("std", 1.0) <= 0:
        raise InitError(f"{name}: std must be > 0, got {full['std']}")
    if name in ("uniform", "trunc_normal") and not full["a"] < full["b"]:
        raise InitError(f"{name}: needs a < b, got a={full['a']}, b={full['b']}")
    return name, out


def _matches(key: str, param: str) -> bool:
    return param == key or param.endswith("." + key)


def is_weight(param: str) -> bool:
    """Parameters a single (unkeyed) initializer applies to: ``*weight*`` by last name part, or a bare tensor."""
    return param == "" or param.rsplit(".", 1)[-1].startswith("weight")


def _assign(out: dict[str, InitSpec], spec: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], what: str,
            strict: bool = True) -> None:
    for key, value in spec.items():
        init = parse_initializer(value)
        targets = [p for p in shapes if _matches(str(key), p)]
        if not targets and not strict:
            continue
        if not targets:
            names = [p for p in shapes if p]
            raise InitError(f"{what}: no parameter '{key}'",
                            choices_hint(str(key), names, "parameters") if names else "this node has no parameters")
        for p in targets:
            if INITIALIZERS[init[0]].needs_2d and len(shapes[p]) < 2:
                raise InitError(f"{what}: {init[0]} needs a parameter with at least 2 dims, "
                                f"'{p or 'the tensor'}' has shape {list(shapes[p])}",
                                "use zeros, ones, constant, normal, uniform or trunc_normal for 1-d parameters")
            out[p] = init


def resolve_inits(defaults: Mapping[str, Any], user: Any, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, InitSpec]:
    """The initializer of each parameter: the op's defaults, then the spec's ``init`` on top.

    ``shapes`` maps the node's parameter names (``""`` for a bare tensor) to shapes.
    Raises :class:`InitError` for an unknown initializer, argument or parameter name.
    """
    out: dict[str, InitSpec] = {}
    _assign(out, defaults, shapes, "default init", strict=False)  # e.g. a tied linear has no weight
    if user is None:
        return out
    if isinstance(user, str) or isinstance(user, Mapping) and "type" in user:
        weights = {p: s for p, s in shapes.items() if is_weight(p)}
        if not weights:
            raise InitError("init: this node has no weight to initialize" if not shapes else
                            f"init: a single initializer applies to weights; this node has only {', '.join(shapes)}",
                            "name the parameters: init: {bias: zeros}" if shapes else "remove 'init'")
        _assign(out, {p: user for p in weights}, shapes, "init")
    elif isinstance(user, Mapping):
        if "" in shapes:
            raise InitError("init: this node holds one tensor; give a single initializer, not a mapping",
                            "e.g. init: zeros, or init: {type: normal, std: 0.02}")
        _assign(out, user, shapes, "init")
    else:
        raise InitError(f"init must be an initializer or a mapping of parameter -> initializer, got {user!r}",
                        "e.g. init: xavier_uniform, or init: {weight: orthogonal, bias: zeros}")
    return out


def init_error(node: str, op: str, pos: SourcePos, err: InitError) -> SpecError:
    """An :class:`InitError` as a SpecError at the node."""
    return SpecError([Diagnostic(pos, f"node '{node}' ({op}): {err.message}", err.hint)])


def param_shapes(obj: Any) -> dict[str, tuple[int, ...]]:
    """Parameter names (relative to the node) and shapes of a module, parameter or buffer."""
    if isinstance(obj, nn.Parameter):
        return {"": tuple(obj.shape)}
    if isinstance(obj, nn.Module):
        return {n: tuple(p.shape) for n, p in obj.named_parameters()}
    return {}


@torch.no_grad()
def apply_inits(obj: Any, inits: Mapping[str, InitSpec]) -> None:
    """Apply resolved initializers in place (with the current, seeded RNG)."""
    for name, (kind, kwargs) in inits.items():
        tensor = obj if name == "" else obj.get_parameter(name)
        INITIALIZERS[kind].apply(tensor, **kwargs)
