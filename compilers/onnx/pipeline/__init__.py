"""The export of one graph as a pipeline of stages, each a short function of the :class:`Export` it fills in.

options -> plan -> build -> trace -> placeholders -> fusions -> precision -> metadata -> verify -> write

* options (:mod:`.options`): the config checked against the graph (dtype, opset range, target, which dims
  stay dynamic, the KV cache's preconditions);
* plan (:mod:`.plan`): an attention kernel per node, then the export's opset;
* build (:mod:`.build`): the torch model (given, or built and loaded with ``weights``), the traced
  wrapper and the KV-cache layers;
* trace (:mod:`.trace`): the TorchScript exporter with the lowerings installed (retried once at the
  small default sizes);
* placeholders, fusions, precision (:mod:`.onnx_passes`): the ONNX graph finished (initializer names,
  placeholders swapped for the real ops at the export's opset, ORT fusions, float16);
* metadata (:mod:`.metadata`); verify and write (:mod:`.write`): ``onnx.checker``, ORT against torch,
  the atomic write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ExportConfig
from ..results import ExportResult

__all__ = ["Export", "run", "stages"]


@dataclass
class Export:
    """One export in progress: the inputs, then what each stage adds."""

    graph: Any
    output: str | Path | None
    config: ExportConfig
    module: Any = None
    given_module: bool = False
    start: float = field(default_factory=time.perf_counter)
    notes: list[str] = field(default_factory=list)
    # options
    info: Any = None
    tolerance: float = 0.0
    dynamic: list[str] = field(default_factory=list)
    frozen: dict[str, str] = field(default_factory=dict)
    # plan
    choices: dict[str, Any] = field(default_factory=dict)
    opset: int = 0
    opset_reason: str = ""
    # build
    names: list[str] = field(default_factory=list)
    out_names: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    io: Any = None
    kv_layers: list[dict[str, Any]] = field(default_factory=list)
    wrapper: Any = None
    batch_sym: Any = None
    # trace and after
    model: Any = None
    fused: dict[str, int] = field(default_factory=dict)
    fusions: dict[str, int] = field(default_factory=dict)
    precision: Any = None
    io_meta: tuple[list, list] = ([], [])
    kv_meta: dict[str, Any] | None = None
    lowering: dict[str, str] = field(default_factory=dict)
    files: Any = None
    source: Any = None
    result: ExportResult | None = None


def stages() -> tuple[Callable[[Export], None], ...]:
    """The stages in order."""
    from .build import build_model
    from .metadata import write_metadata
    from .onnx_passes import convert_precision, replace_placeholders, run_fusions
    from .options import check_options
    from .plan import plan_export
    from .trace import trace
    from .write import verify, write

    return (check_options, plan_export, build_model, trace, replace_placeholders, run_fusions, convert_precision,
            write_metadata, verify, write)



def run(graph: Any, output: str | Path | None, config: ExportConfig, module: Any = None) -> ExportResult:
    """Export ``graph`` to ``output`` (None: build and check only) as ``config`` asks; ``module``: an already built
    torch model of ``graph`` whose weights are exported."""
    state = Export(graph, output, config, module, given_module=module is not None)
    try:
        for stage in stages():
            stage(state)
    finally:
        if state.files is not None:
            state.files.close()
    assert state.result is not None
    state.result.seconds = time.perf_counter() - state.start
    return state.result
