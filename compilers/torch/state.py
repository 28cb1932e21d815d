"""State dicts keyed by spec names, with shared and tied weights stored once.

The keys of a compiled model's ``state_dict`` are the spec's node names plus
the parameter name: ``body.0.fc.weight`` is the weight of node ``fc`` in copy 0
of block use ``body``. Two kinds of sharing keep one tensor per weight:

* weight tying (``linear`` with ``tie: embed``): the linear holds no weight of
  its own -- its forward reads ``self.embed.weight`` -- so only
  ``embed.weight`` exists (plus the linear's ``bias``, if any);
* ``repeat`` with ``share: true``: copies 1..N-1 hold the same module object as
  copy 0. ``torch``'s own ``state_dict`` lists such a tensor under every copy's
  name; :func:`state_dict_for` keeps the first name only, and
  :func:`load_state_dict` fills the other names from it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn


def aliases(module: nn.Module) -> dict[str, str]:
    """State-dict keys that name a tensor already listed under an earlier key: alias -> first key."""
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for key, value in module.state_dict(keep_vars=True).items():
        if id(value) in first:
            out[key] = first[id(value)]
        else:
            first[id(value)] = key
    return out


def state_dict_for(module: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """The model's state dict keyed by spec names, each shared tensor once (under its first name)."""
    dup = aliases(module)
    return OrderedDict((k, v) for k, v in module.state_dict().items() if k not in dup)


@dataclass
class LoadReport:
    """What :func:`load_state_dict` did: keys loaded, missing, unexpected, and skipped for a shape mismatch."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every key of the model was loaded and nothing was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 8) -> str:
        """A readable summary of the problems."""
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")
        parts = []
        if self.missing:
            parts.append(f"missing keys: {some(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected keys: {some(self.unexpected)}")
        if self.mismatched:
            parts.append("shape mismatch: " + some([f"{k} (model {list(m)}, state dict {list(s)})"
                                                    for k, (m, s) in self.mismatched.items()]))
        return "; ".join(parts) or "all keys loaded"


class StateDictError(KeyError):
    """A strict load found missing, unexpected or mismatched keys."""

    def __init__(self, report: LoadReport):
        super().__init__(report.describe())
        self.report = report

    def __str__(self) -> str:
        return self.report.describe()


def load_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True) -> LoadReport:
    """Load a spec-keyed state dict (from :func:`state_dict_for` or ``module.state_dict()``).

    With ``strict`` (the default) any missing, unexpected or shape-mismatched
    key raises :class:`StateDictError` and nothing is loaded. Without it, the
    keys that fit are loaded and the rest reported -- e.g. after editing one
    node of a spec, the untouched nodes keep their trained weights.
    """
    dup = aliases(module)
    own = module.state_dict()
    state = dict(state)
    for alias, first in dup.items():
        if alias not in state and first in state:
            state[alias] = state[first]
    report = LoadReport()
    for key, target in own.items():
        if key not in state:
            if key not in dup:
                report.missing.append(key)
        elif tuple(state[key].shape) != tuple(target.shape):
            if key not in dup:
                report.mismatched[key] = (tuple(target.shape), tuple(state[key].shape))
        elif key not in dup:
            report.loaded.append(key)
    report.unexpected = [k for k in state if k not in own]
    if strict and not report.ok:
        raise StateDictError(report)
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    module.load_state_dict(usable, strict=False)
    return report
