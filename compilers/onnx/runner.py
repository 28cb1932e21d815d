"""Running exported models with ONNX Runtime: sessions per target, input files, checked feeds.

::

    from nngraph.compilers.onnx import run_model
    outputs = run_model("gpt.onnx", {"tokens": np.array([[1, 2, 3]])})   # {"logits": array}

Input files for ``nngraph infer --input NAME=FILE``: ``.npy`` (one array), ``.npz`` (the array
stored under NAME, or its only array), ``.json`` (nested lists, converted to the model input's
dtype). Before running, every feed is checked against the model's declared inputs, and problems
are reported as :class:`InferError` with what to change: an unknown input name (with the
closest name), a missing input, a wrong rank, a size that differs from a fixed dim, a dim name
bound to two different sizes, a wrong dtype. A file that is not an ONNX model is refused before
ORT sees it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from nngraph import readers

from .kernels.base import target_info

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_, "tensor(int16)": np.int16,
}


class InferError(ValueError):
    """Unusable model file, input file, or feed (the message says what to change)."""


def providers_for(target: str) -> list[str]:
    """The target's execution providers that this onnxruntime has; raises InferError when the first is missing."""
    import onnxruntime as ort

    info = target_info(target)
    available = ort.get_available_providers()
    if info.providers[0] not in available:
        raise InferError(f"target {info.name} needs {info.providers[0]}, which this onnxruntime does not have "
                         f"(available: {', '.join(available)}); use --target ort-cpu")
    return [p for p in info.providers if p in available]


OPT_LEVELS = ("all", "extended", "basic", "disable")
#: ORT's "fatal only" log level for runs: its error lines (coloured, on stderr) would come before our message,
#: which already carries the same text with the node's name
QUIET_RUNS = 4


def run_options() -> Any:
    """ORT run options that keep its own log lines off stderr (run errors reach the user as InferError)."""
    import onnxruntime as ort

    opts = ort.RunOptions()
    opts.log_severity_level = QUIET_RUNS
    return opts


def check_threads(threads: int | None) -> None:
    """InferError unless ``threads`` is None or 1..the machine's CPUs (ORT crashes creating 100,000 threads)."""
    import os

    cpus = os.cpu_count() or 1
    if threads is not None and not 1 <= threads <= cpus:
        raise InferError(f"--threads {threads}: this machine has {cpus} CPUs; give 1..{cpus}")


def session_options(threads: int | None = None, opt_level: str = "all", spin: bool | None = None) -> Any:
    """ORT session options: ``threads`` intra-op threads (None: ORT's default, one per core), graph
    optimization level (``all`` = ORT_ENABLE_ALL, ORT's default, which also runs its own fusions; ``extended``,
    ``basic``, ``disable``), ``spin``: whether idle intra-op threads spin waiting for work (None: ORT's default,
    on; off saves CPU when the process does other work between runs, at a small latency cost)."""
    import onnxruntime as ort

    if opt_level not in OPT_LEVELS:
        raise InferError(f"unknown optimization level '{opt_level}' (use {', '.join(OPT_LEVELS)})")
    ort.set_default_logger_severity(3)  # the process-wide logger's warnings (telemetry) would precede our output
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[opt_level]
    if threads:
        opts.intra_op_num_threads = threads
    if spin is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return opts


def make_session(model: bytes | str | Path, target: str = "ort-cpu", threads: int | None = None,
                 opt_level: str = "all", spin: bool | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for a model file or serialized bytes (options: :func:`session_options`)."""
    import onnxruntime as ort

    opts = session_options(threads, opt_level, spin)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=providers_for(target))


def check_model_file(path: str | Path) -> Path:
    """``path`` if it is a regular file within the memory cap, else InferError (missing, a FIFO, a device...)."""
    path = Path(path)
    try:  # a FIFO would block the load, a device never ends
        readers.check_regular(path, readers.memory_cap(readers.TENSOR_SHARE), "model file")
    except readers.FileRefused as exc:
        raise InferError(str(exc)) from None
    return path


def open_model(path: str | Path, target: str = "ort-cpu", threads: int | None = None, opt_level: str = "all",
               spin: bool | None = None) -> Any:
    """A session for the ONNX file ``path``; InferError for a missing file or one that is not ONNX."""
    import onnx

    path = check_model_file(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a protobuf parse error means "not an ONNX model"
        raise InferError(f"'{path}' is not an ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not model.graph.node and not model.graph.output:
        raise InferError(f"'{path}' is not an ONNX model (no graph)")
    _check_external(model, path)
    try:
        return make_session(path, target, threads, opt_level, spin)
    except InferError:
        raise
    except Exception as exc:  # noqa: BLE001 - ORT's own load error, one line
        raise InferError(f"onnxruntime cannot load '{path}': {str(exc).splitlines()[0][:300]}") from None


def _check_external(model: Any, path: Path) -> None:
    """Weights stored beside the model (external data, large models): every data file must be there."""
    from onnx.external_data_helper import uses_external_data

    files = set()
    for t in model.graph.initializer:
        if uses_external_data(t):
            files |= {e.value for e in t.external_data if e.key == "location"}
    missing = sorted(f for f in files if not (path.parent / f).is_file())
    if missing:
        raise InferError(f"'{path}' keeps its weights in {', '.join(missing)} (external data), which is not beside "
                         "it: copy the model and its data file together")


def describe_inputs(session: Any) -> str:
    return ", ".join(f"{i.name} {_shape_text(i.shape)} "
                     f"{np.dtype(_ORT_DTYPES[i.type]).name if i.type in _ORT_DTYPES else i.type}"
                     for i in session.get_inputs())


def _shape_text(shape: list) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"


def read_input_file(path: str | Path, name: str, dtype: Any = None) -> np.ndarray:
    """The array in ``path`` for input ``name`` (.npy, .npz, .json); InferError with the reason."""
    path = Path(path)
    suffix = path.suffix.lower()
    cap = readers.memory_cap(readers.BINARY_SHARE)
    try:
        readers.check_regular(path, None, "input file")
        if suffix == ".npy":
            return readers.npy_file(path, cap, "input file")
        if suffix == ".npz":
            keys = readers.npz_names(path, "input file")
            if name not in keys and len(keys) != 1:
                raise InferError(f"'{path}' holds {', '.join(keys)}; none is named '{name}' (save it under that name)")
            key = name if name in keys else keys[0]
            return readers.npz_file(path, cap, "input file", [key])[key]
        if suffix == ".json":
            data = json.loads(readers.read_bytes(path, readers.memory_cap(readers.TEXT_SHARE), "input file"))
            arr = np.asarray(data)
            if arr.dtype == object:
                raise InferError(f"'{path}': the JSON for '{name}' is not a rectangular array of numbers")
            if dtype is not None and np.dtype(dtype).kind in "iub" and arr.dtype.kind == "f":
                raise InferError(f"'{path}': input '{name}' takes {np.dtype(dtype).name}, the JSON holds fractions")
            return arr.astype(dtype) if dtype is not None else arr
    except InferError:
        raise
    except readers.FileRefused as exc:
        raise InferError(f"{exc} (for input '{name}')") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file: say which and why
        raise InferError(f"cannot read '{path}' for input '{name}': {type(exc).__name__}: {str(exc)[:200]}") from None
    raise InferError(f"input file '{path}': use .npy, .npz or .json")


def parse_input_args(items: list[str], session: Any) -> dict[str, np.ndarray]:
    """``["NAME=FILE", ...]`` -> arrays (JSON converted to the model input's dtype)."""
    types = {i.name: _ORT_DTYPES.get(i.type) for i in session.get_inputs()}
    feeds = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name.strip() or not file.strip():
            raise InferError(f"--input '{item}' is not NAME=FILE (e.g. --input tokens=tokens.npy)")
        name = name.strip()
        _known(name, session)
        if name in feeds:
            raise InferError(f"input '{name}' given twice")
        feeds[name] = read_input_file(file.strip(), name, types.get(name))
    return feeds


def _known(name: str, session: Any) -> None:
    names = [i.name for i in session.get_inputs()]
    if name not in names:
        from nngraph.errors import did_you_mean

        guess = did_you_mean(name, names)
        raise InferError(f"the model has no input '{name}'" + (f"; {guess}" if guess else "") +
                         f" (inputs: {describe_inputs(session)})")


def check_feeds(session: Any, feeds: Mapping[str, np.ndarray], give: str = "--input {}=FILE") -> dict[str, np.ndarray]:
    """Validate ``feeds`` against the model's inputs; returns them as numpy arrays. ``give``: how the caller
    passes an input, for the message about a missing one (``nngraph infer``'s flag; a server's JSON key)."""
    out = {}
    for name in feeds:
        _known(name, session)
    bound: dict[str, tuple[int, str]] = {}
    for spec in session.get_inputs():
        if spec.name not in feeds:
            raise InferError(f"missing input '{spec.name}' {_shape_text(spec.shape)}; give it with "
                             f"{give.format(spec.name)} (inputs: {describe_inputs(session)})")
        arr = np.asarray(feeds[spec.name])
        want = _ORT_DTYPES.get(spec.type)
        if want is not None and arr.dtype != np.dtype(want):
            raise InferError(f"input '{spec.name}' is {arr.dtype.name}, the model takes {np.dtype(want).name} "
                             f"(convert it, e.g. numpy: a.astype(np.{np.dtype(want).name}))")
        if len(spec.shape) != arr.ndim:
            raise InferError(f"input '{spec.name}' has rank {arr.ndim} {list(arr.shape)}, the model takes rank "
                             f"{len(spec.shape)} {_shape_text(spec.shape)}")
        for axis, (dim, size) in enumerate(zip(spec.shape, arr.shape)):
            if isinstance(dim, int) and dim >= 0 and dim != size:
                raise InferError(f"input '{spec.name}' has size {size} in dim {axis}, the model's dim is fixed at "
                                 f"{dim} (shape {_shape_text(spec.shape)}, got {list(arr.shape)})")
            if isinstance(dim, str) and dim:
                prev = bound.get(dim)
                if prev is not None and prev[0] != size:
                    raise InferError(f"dim '{dim}' is {prev[0]} in input '{prev[1]}' but {size} in input "
                                     f"'{spec.name}' (dim {axis}); inputs sharing a dim name must agree")
                bound.setdefault(dim, (size, spec.name))
        out[spec.name] = arr
    return out


def run_session(session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check and run; returns ``{output name: array}``; ORT run errors become one-line InferErrors."""
    checked = check_feeds(session, feeds)
    names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, checked, run_options())
    except Exception as exc:  # noqa: BLE001 - ORT's run error, first line
        raise InferError(f"onnxruntime failed: {str(exc).splitlines()[0][:400]}") from None
    return dict(zip(names, values))


def run_model(model: str | Path | Any, feeds: Mapping[str, Any], target: str = "ort-cpu") -> dict[str, np.ndarray]:
    """Run an ONNX file (or session) on ``feeds`` (arrays or tensors) with ``target``'s providers."""
    session = model if hasattr(model, "run") else open_model(model, target)
    arrays = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in feeds.items()}
    return run_session(session, arrays)
