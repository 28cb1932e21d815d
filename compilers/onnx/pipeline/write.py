"""Stages 9-10: ``onnx.checker`` and ORT against torch (verify), then the atomic write (:mod:`..files`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import ModelFiles
from ..results import ExportError, ExportResult
from .trace import first_line


def verify(s: Any) -> None:
    """Check the model (full ``onnx.checker``), make the result, and with ``verify`` run the file in ORT against
    the torch model at two sizes of every dynamic dim (:func:`nngraph.compilers.onnx.verify.verify_model`)."""
    cfg, graph = s.config, s.graph
    s.files = ModelFiles(s.model, s.output, cfg.external_data, cfg.external_threshold)
    try:
        s.source = s.files.check()
    except OSError as exc:  # the temporary folder beside the output (external data): not the model's fault
        raise write_error(s.output, exc) from None
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"the exported model of '{graph.name}' is not valid ONNX: {first_line(exc)}") from exc
    s.result = ExportResult(Path(s.output) if s.output else None, graph.name, s.opset, s.info.name, s.choices,
                            s.fused, s.io_meta[0], s.io_meta[1], s.dynamic, s.lowering, s.kv_meta, s.notes,
                            size_bytes=s.files.size, fusions=s.fusions, dtype=cfg.dtype,
                            external_data=s.files.data_name, opset_reason=s.opset_reason)
    if cfg.verify:
        from .. import verify as checks  # looked up per call: tests replace verify_model

        ver = s.result.verification = checks.verify_model(
            s.source, graph, s.module, s.names, s.out_names, s.sizes, s.dynamic, cfg.seed, s.tolerance, s.kv_meta,
            cfg.include_optional)
        if not ver.ok:
            what = (f"the outputs of '{graph.name}' hold NaN or infinity (check the weights)"
                    if any(r.get("nonfinite") for r in ver.runs) else
                    f"the ONNX model of '{graph.name}' does not match torch"
                    f"{' (float16 file vs float32 torch)' if cfg.dtype == 'float16' else ''}")
            raise ExportError(f"{what}:\n{ver.describe()}\n(nothing was written; --no-verify writes anyway)")


def write(s: Any) -> None:
    """The file (and its external data) renamed into place; nothing without an output."""
    if s.output:
        try:
            s.files.commit()
        except OSError as exc:
            raise write_error(s.output, exc) from None


def write_error(output: Any, exc: OSError) -> ExportError:
    """Writing the model failed for a reason of the file system (a read-only folder, a full disk, a long name)."""
    folder = Path(output).parent
    return ExportError(f"cannot write '{output}' into the folder '{folder}': {exc.strerror or exc}"
                       f"{f' (at {exc.filename})' if exc.filename else ''}")
