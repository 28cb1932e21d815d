"""What an export returns and how it fails: :class:`ExportResult`, :class:`Verification`, :class:`ExportError`.

Kept apart from the pipeline so the stages (verification included) and the encoder-decoder split
import them without importing the pipeline back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .kernels import Choice


class ExportError(ValueError):
    """An export that cannot be done or failed its checks (message says what and what to change)."""


@dataclass
class Verification:
    """ORT vs torch on random inputs: max abs diff per (sizes, output).

    A run passes when max |ORT - torch| <= tolerance · max(1, max |torch|): the absolute tolerance for
    outputs of order one, relative for large ones (float32 rounding grows with the magnitude).
    """

    tolerance: float
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_diff(self) -> float:
        return max((r["max_abs_diff"] for r in self.runs), default=0.0)

    def passes(self, run: dict[str, Any]) -> bool:
        """Within tolerance, and every output finite: NaN against NaN "agrees" but checks nothing."""
        return not run.get("nonfinite") and run["max_abs_diff"] <= self.tolerance * max(1.0, run.get("scale", 1.0))

    @property
    def ok(self) -> bool:
        return all(self.passes(r) for r in self.runs)

    def describe(self) -> str:
        lines = []
        for r in self.runs:
            mark = "ok" if self.passes(r) else "MISMATCH"
            if r.get("nonfinite"):
                mark = f"NOT FINITE ({r['nonfinite']} NaN or infinite values in ORT's outputs)"
            sizes = ", ".join(f"{k}={v}" for k, v in r["sizes"].items()) or "static shapes"
            lines.append(f"  {r.get('what', 'forward')} at {sizes}: max |ORT - torch| = {r['max_abs_diff']:.2e} {mark}")
        return "\n".join(lines)


@dataclass
class ExportResult:
    """What :func:`export_graph` did."""

    path: Path | None
    spec: str
    opset: int
    target: str
    choices: dict[str, Choice]
    fused_ops: dict[str, int]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    dynamic: list[str]
    lowering: dict[str, str]
    kv_cache: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    verification: Verification | None = None
    seconds: float = 0.0
    size_bytes: int = 0

    fusions: dict[str, int] = field(default_factory=dict)
    encoder: "ExportResult | None" = None   # an encoder-decoder's encoder file (kv_cache export)
    dtype: str = "float32"
    external_data: str | None = None         # the weights file beside the model (large models)
    opset_reason: str = ""                   # why the file has its opset (:func:`nngraph.compilers.onnx.opsets.explain`)

    def explain(self) -> str:
        text = explain_text(self.choices, self.lowering, self.target, self.opset, self.fused_ops, self.opset_reason)
        if self.fusions:
            from .fusions import describe

            text += "\n" + describe(self.fusions)
        return text


def explain_text(choices: Mapping[str, Choice], lowering: Mapping[str, str], target: str, opset: int,
                 fused: Mapping[str, int] | None = None, opset_reason: str = "") -> str:
    """The ``--explain`` report: the opset and why, every attention node's kernel and reason, every candidate's
    verdict, other lowerings."""
    lines = [f"target {target}, opset {opset}" + (f" ({opset_reason})" if opset_reason else "")]
    if not choices:
        lines.append("no attention nodes")
    for name, c in choices.items():
        lines.append(f"{name}: {c.kernel.name} ({c.kernel.onnx_op}) -- {c.reason}")
        lines.append(f"    mask: {c.site.parts.describe()}; position: {c.site.position}; heads {c.site.heads}, "
                     f"kv_heads {c.site.kv_heads}, head_dim {c.site.head_dim}")
        for kname, reason in c.verdicts:
            if kname == c.kernel.name:
                continue
            lines.append(f"    {kname}: " + ("applies, lower preference" if reason is None else f"no: {reason}"))
    for name, how in lowering.items():
        lines.append(f"{name}: {how}")
    if fused:
        lines.append("fused ops in the file: " + ", ".join(f"{k} x{v}" for k, v in sorted(fused.items())))
    return "\n".join(lines)
