"""What an export is asked to do: :class:`ExportConfig`, one frozen value the pipeline stages read."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class ExportConfig:
    """The options of one export (:func:`nngraph.compilers.onnx.export.export_graph` documents each).

    ``dynamic``: symbolic input dims that stay dynamic (None: all that can); ``dims``: sizes to trace at;
    ``kv_cache``: past/present key-value inputs and outputs; ``kernels``: a kernel per node name (``*``: all);
    ``fuse``: None (the target's default fusions), True, False or fusion names; ``dtype``: ``float32`` or
    ``float16``; ``tolerance``: None (1e-4, float16: :data:`nngraph.compilers.onnx.precision.FP16_TOLERANCE`);
    ``external_data``: None (when the weights exceed ``external_threshold``), True or False;
    ``expected_seq``: the sequence length the file mostly runs at (kernel choice); ``tokenizer``: a
    tokenizer.json stored in the metadata (default: the one of the run folder the weights come from).
    """

    weights: str | Path | None = None
    target: Any = "ort-cpu"
    opset: int | None = None
    dynamic: Sequence[str] | None = None
    dims: Mapping[str, int] | None = None
    kv_cache: bool = False
    kernels: Mapping[str, str] | None = None
    seed: int = 0
    include_optional: bool = False
    verify: bool = True
    tolerance: float | None = None
    spec_file: str | None = None
    fuse: bool | Sequence[str] | None = None
    extra_metadata: Mapping[str, Any] | None = None
    dtype: str = "float32"
    external_data: bool | None = None
    external_threshold: int | None = None
    expected_seq: int | None = None
    tokenizer: str | Path | None = None   # a tokenizer.json to store in the metadata (default: the run's)

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> "ExportConfig":
        """The config from keyword options (a TypeError names an unknown one, as a keyword argument would)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown export option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**options)
