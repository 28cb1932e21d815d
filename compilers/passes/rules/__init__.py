"""The rules of the passes, one per module, registered on import and discovered (like op families).

* ``fuse_*``: fusion rules (pattern over primitive ops -> one fused node);
* ``lower_*``: lowering rules, one per kernel candidate: ``lower_kernels`` stands for every kernel of the
  kernel registry (:mod:`nngraph.compilers.kernels`: torch reference, sdpa, local, flex and ONNX Runtime
  ort-gqa, ort-mha, onnx-attention, decomposed — one file each with its check and its code: torch
  ``run`` or ONNX ``emit``). The check returns why the kernel does not apply to a node on a target in a
  mode, the rewrite returns the kernel's configuration, and ``cost`` estimates one call (torch kernels).

Adding a kernel = one file in ``compilers/kernels/`` plus its data in ``compilers/targets/profiles.json``
(an ONNX kernel: plus its emitter in ``compilers/onnx/emitters/``).
"""

from __future__ import annotations

from nngraph.discovery import Registry

from ..rewrite import Rule

_RULES = Registry(__name__, __path__, "rule")


def register(rule: Rule) -> Rule:
    """Register a rule (names are unique)."""
    return _RULES.add(rule.name, rule)


def rules(kind: str | None = None) -> list[Rule]:
    """Every rule (``kind``: "fuse" or "lower" selects by name prefix), in registration order."""
    return [r for r in _RULES.all().values() if kind is None or r.name.startswith(kind + "_")]
