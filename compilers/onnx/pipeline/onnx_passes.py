"""Stages 5-7, on the traced ONNX graph: placeholders -> fusions -> precision."""

from __future__ import annotations

from typing import Any

from ..results import ExportError


def replace_placeholders(s: Any) -> None:
    """Initializers named after the parameters (:mod:`..names`); the export's opset; the ``ai.nngraph``
    placeholders swapped for their ONNX ops (:func:`nngraph.compilers.onnx.rewrite.finish`)."""
    from .. import rewrite
    from ..names import drop_initializer_inputs, name_initializers

    drop_initializer_inputs(s.model)
    name_initializers(s.model, s.module)
    s.model, s.fused = rewrite.finish(s.model, s.opset)


def run_fusions(s: Any) -> None:
    """The ONNX Runtime fusions the config and the target ask for (:mod:`..fusions`)."""
    from ..fusions import fuse_export

    try:
        s.fusions = fuse_export(s.model, s.fused, s.info, s.config.fuse)
    except ValueError as exc:
        raise ExportError(str(exc)) from None


def convert_precision(s: Any) -> None:
    """The file's dtype (:mod:`..precision`: float16 converts, float32 inputs/outputs kept)."""
    from ..precision import convert

    try:
        s.model, s.precision = convert(s.model, s.config.dtype, s.info, s.notes)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
