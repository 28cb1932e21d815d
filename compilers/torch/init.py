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
The catalog and the checks that need no shapes are the front end's (nngraph/initializers.py: ``validate``
runs them); this module adds how each applies and the checks against the node's parameters.
Problems are :class:`nngraph.errors.SpecError` diagnostics at the node.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn

from nngraph.errors import choices_hint
from nngraph.initializers import INITIALIZER_DEFS, InitError, is_single, parse_initializer

from .registry import InitSpec

__all__ = ["APPLY", "InitError", "apply_inits", "param_shapes", "parse_initializer", "resolve_inits"]


def _fn(f: Callable[..., Any]) -> Callable[..., Any]:
    return lambda t, **kw: f(t, **kw)


#: how each initializer of nngraph/initializers.py applies to a tensor
APPLY: dict[str, Callable[..., Any]] = {
    "zeros": _fn(nn.init.zeros_),
    "ones": _fn(nn.init.ones_),
    "constant": lambda t, value: nn.init.constant_(t, value),
    "normal": _fn(nn.init.normal_),
    "uniform": _fn(nn.init.uniform_),
    "trunc_normal": _fn(nn.init.trunc_normal_),
    "xavier_uniform": _fn(nn.init.xavier_uniform_),
    "xavier_normal": _fn(nn.init.xavier_normal_),
    "kaiming_uniform": _fn(nn.init.kaiming_uniform_),
    "kaiming_normal": _fn(nn.init.kaiming_normal_),
    "orthogonal": _fn(nn.init.orthogonal_),
}


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
            if INITIALIZER_DEFS[init[0]].needs_2d and len(shapes[p]) < 2:
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
    if is_single(user):
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
        APPLY[kind](tensor, **kwargs)
