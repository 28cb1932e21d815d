"""The default-domain opset of an export: the lowest one that what the export emits needs, and its IR version.

Each part that can need a newer opset declares it once, next to itself; the plan stage collects
the declarations of what an export chose (:func:`nngraph.compilers.onnx.pipeline.plan.needs`) and
:func:`choose_opset` takes the maximum:

* an attention kernel: ``KernelDef.min_opset`` (:mod:`nngraph.compilers.kernels`; the ``Attention`` op: 23;
  the ``com.microsoft`` contrib kernels and the decomposed graph: none -- contrib ops live in their
  own domain, with its own version, and do not raise the default one);
* an op whose export translation needs a newer op version: ``min_opset(node)`` of the lowering
  modules (:func:`nngraph.compilers.onnx.lowering.min_opset`; e.g. ScatterElements' ``max`` reduction: 18);
* a fusion: ``Fusion.min_opset(graph)`` (:mod:`.fusions`; bias_gelu anchors on the opset-20 ``Gelu``).

A kernel's need decides whether it applies (planning); a lowering's need is hard (an explicit
``--opset`` below it is an error); a fusion's is a wish (below it the fusion finds nothing to fuse).

The floor is :data:`MIN_OPSET` = 17, the lowest opset this exporter is tested at: the TorchScript
exporter writes any opset from 7 to 20, and an MLP or a CNN exports correctly far below 17, but
17 is where ``LayerNormalization`` is one op (below, torch writes it as seven, which ORT's kernels and
the skip_layer_norm fusion no longer see), ScatterElements has its ``add`` reduction (16: the GNN and
MoE scatters) and every ONNX Runtime from 1.12 on runs it -- going lower buys no supported runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the lowest opset an export writes (see the module doc)
MIN_OPSET = 17
#: the newest opset an export writes; kernels are planned at it unless the export names a lower one
MAX_OPSET = 23


@dataclass(frozen=True)
class Need:
    """One declared requirement: ``what`` (a node's kernel, a lowering, a fusion) needs ``opset`` because ``why``."""

    opset: int
    what: str
    why: str
    hard: bool = True   # False: a fusion, which merely finds nothing below its opset

    def describe(self) -> str:
        return f"{self.what} needs opset {self.opset}: {self.why}"


def choose_opset(requested: int | None, found: list[Need]) -> int:
    """``requested`` checked against the hard needs (ValueError when one is above it), or, when None, the lowest
    opset every need is met at."""
    if requested is None:
        return max([MIN_OPSET] + [n.opset for n in found])
    if not MIN_OPSET <= requested <= MAX_OPSET:
        raise ValueError(f"opset {requested} is not supported: use {MIN_OPSET}..{MAX_OPSET} (default: the lowest "
                         "the model needs)")
    above = [n for n in found if n.hard and n.opset > requested]
    if above:
        raise ValueError(f"opset {requested} is too old for this model: {above[0].describe()}")
    return requested


def explain(opset: int, requested: int | None, found: list[Need]) -> str:
    """Why the file has ``opset`` (the ``--explain`` header's parenthesis)."""
    if requested is not None:
        return "as asked"
    top = [n for n in found if n.opset == opset]
    if not top:
        return f"the floor: nothing in it needs a newer opset than {MIN_OPSET}"
    by_why: dict[str, list[str]] = {}
    for n in top:  # one line per reason: every GAT layer needs 18 for the same scatter
        by_why.setdefault(n.why, []).append(n.what)
    return "the lowest it needs: " + "; ".join(f"{', '.join(whats)} need{'s' if len(whats) == 1 else ''} {opset}: "
                                               f"{why}" for why, whats in by_why.items())


def ir_version(opset: int) -> int:
    """The lowest ONNX IR version that default-domain ``opset`` needs (17, 18: 8; 19, 20: 9; 21, 22: 10; 23: 11)."""
    from onnx import helper

    return helper.find_min_ir_version_for([helper.make_opsetid("", opset)], ignore_unknown=True)
