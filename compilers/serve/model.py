"""The served model: an ONNX Runtime session, its inputs and outputs, how requests stack into one batch.

Batching along the *batch dim*: the symbolic dim that is axis 0 of every input and every output (named
``batch`` in nngraph's exports). Requests are concatenated along it and each one's rows are cut back out
of every output. A model without such a dim runs one request at a time.

Padding along another symbolic dim D (a sequence length) lets requests of different sizes share a batch:
each is padded at the end of D with zeros to the longest, and each output is cut back to the request's
size of D. That is exact only when the model never lets a padded position reach a real one -- causal
attention, or a key-padding mask fed by a ``lengths`` input -- which the ONNX file does not say. So it is
*measured* at start-up (:meth:`ServedModel.probe`): a random probe is run at size s and padded to s + 2,
and D is paddable only when the real positions agree to :data:`PROBE_TOLERANCE`; stacking rows along the
batch dim is probed the same way (row i alone against the stacked run). Requests that differ in a dim that
is neither the batch dim nor paddable are run in separate batches, never padded. The other symbolic dims of
a probe take the first of 3, 16, 64 at which the model runs.

Probe values: floats ~ N(0, 1); integer inputs with a symbolic dim besides the batch dim hold ids 0 or 1
(valid for any vocabulary of two or more); other integer inputs (a [batch] ``lengths``) hold 1, the smallest
valid length; booleans are random. A probe that
fails to run (an id outside a vocabulary of one) leaves the dim unpadded; the reason is in ``/metadata``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nngraph.compilers.onnx.metadata import read_metadata, spec_dims
from nngraph.compilers.onnx.runner import InferError, check_feeds, open_model, run_options

#: max |padded - alone| / max(1, max |alone|) for padding or stacking to count as exact at start-up
PROBE_TOLERANCE = 1e-5
#: the probe's sizes: batch rows, the sizes of the other symbolic dims tried in turn until the model runs at one
#: (a convolution may need 16 positions, a learned position table allows only so many), the padding added
PROBE_ROWS, PROBE_SIZES, PROBE_PAD = 2, (3, 16, 64), 2


@dataclass
class Tensor:
    """One input or output: name, shape (ints and dim names) and numpy dtype name."""

    name: str
    shape: list[Any]
    dtype: str


@dataclass
class Request:
    """One request's checked feeds; ``rows``: its size along the batch dim (1 without one)."""

    feeds: dict[str, np.ndarray]
    rows: int = 1
    sizes: dict[str, int] = field(default_factory=dict)  # symbolic dim -> size in this request


class ServedModel:
    """Sessions opened once (``instances`` of the model, each run by its own worker thread: :mod:`.batching`);
    checks requests, stacks them (:meth:`stack`), runs and splits (:meth:`run`)."""

    def __init__(self, path: str | Path, target: str = "ort-cpu", threads: int | None = None,
                 spin: bool = False, instances: int = 1) -> None:
        self.path = Path(path)
        # spin=False: idle ORT threads would otherwise spin after each run, taking the CPU the event loop
        # needs to take in the next requests
        self.sessions = [open_model(self.path, target, threads, spin=spin) for _ in range(instances)]
        first = self.sessions[0]
        self.meta = read_metadata(first)
        self.inputs = [_tensor(i, self.meta) for i in first.get_inputs()]
        self.outputs = [_tensor(o, self.meta) for o in first.get_outputs()]
        self.batch_dim = _batch_dim(self.inputs, self.outputs)
        self._specs = _Inputs(first.get_inputs())  # ORT builds new objects on every get_inputs()
        self.paddable: list[str] = []
        self.probe_notes: dict[str, str] = {}

    # --- requests -------------------------------------------------------------------------------------
    def check(self, feeds: Mapping[str, np.ndarray]) -> Request:
        """A request's feeds checked against the model's inputs (names, dtypes, ranks, fixed dims, dims
        shared by name); :class:`InferError` naming the input and what the model takes."""
        checked = check_feeds(self._specs, feeds, give='"inputs": {{"{}": ...}}')
        sizes: dict[str, int] = {}
        for t in self.inputs:
            for dim, size in zip(t.shape, checked[t.name].shape):
                if isinstance(dim, str):
                    sizes[dim] = int(size)
        rows = sizes.get(self.batch_dim, 1) if self.batch_dim else 1
        return Request(checked, rows, sizes)

    def key(self, req: Request) -> tuple:
        """Requests with equal keys stack into one batch: every size but the batch dim's and padded dims'
        (a model without a batch dim: every request its own)."""
        if self.batch_dim is None:
            return (id(req),)
        return tuple(sorted((d, s) for d, s in req.sizes.items() if d != self.batch_dim and d not in self.paddable))

    def dtype_of(self, name: str) -> np.dtype | None:
        """The numpy dtype input ``name`` takes (None for an unknown name)."""
        t = next((t for t in self.inputs if t.name == name), None)
        return None if t is None else np.dtype(t.dtype)

    # --- batches --------------------------------------------------------------------------------------
    def run(self, group: Sequence[Request], instance: int = 0) -> list[dict[str, np.ndarray]]:
        """Run requests of one :meth:`key` as one batch on session ``instance``; each request's outputs, cut
        back exactly."""
        if len(group) == 1:
            return [self._run(group[0].feeds, instance)]
        sizes = {d: max(r.sizes[d] for r in group) for d in self.paddable if d in group[0].sizes}
        feeds = {t.name: np.concatenate([_pad(r.feeds[t.name], t.shape, sizes) for r in group], axis=0)
                 for t in self.inputs}
        out = self._run(feeds, instance)
        results, start = [], 0
        for r in group:
            results.append({t.name: _cut(out[t.name][start:start + r.rows], t.shape, r.sizes) for t in self.outputs})
            start += r.rows
        return results

    def _run(self, feeds: Mapping[str, np.ndarray], instance: int = 0) -> dict[str, np.ndarray]:
        names = [t.name for t in self.outputs]
        try:
            values = self.sessions[instance].run(names, dict(feeds), run_options())
        except Exception as exc:  # noqa: BLE001 - ORT's run error, first line
            raise InferError(f"onnxruntime failed: {str(exc).splitlines()[0][:400]}") from None
        return dict(zip(names, values))

    # --- start-up probes ------------------------------------------------------------------------------
    def probe(self) -> None:
        """Decide by measurement whether rows stack along the batch dim and which dims may be padded (module doc)."""
        if self.batch_dim is None:
            self.probe_notes["batch"] = "no symbolic dim is axis 0 of every input and output: one request per run"
            return
        why = self._probe_stacking()
        if why:
            self.probe_notes[self.batch_dim] = f"rows do not stack: {why}; one request per run"
            self.batch_dim = None
            return
        self.probe_notes[self.batch_dim] = "rows stack exactly (probed)"
        for dim in self._other_dims():
            why = self._probe_padding(dim)
            self.probe_notes[dim] = f"not padded: {why}" if why else "padded at the end to the longest request (probed)"
            if not why:
                self.paddable.append(dim)

    def _other_dims(self) -> list[str]:
        dims = [d for t in self.inputs for d in t.shape if isinstance(d, str) and d != self.batch_dim]
        return list(dict.fromkeys(dims))

    def _probe_stacking(self) -> str | None:
        def check(size: int) -> str | None:
            rng = np.random.default_rng(0)
            sizes = {d: size for d in self._other_dims()}
            rows = [self._sample(rng, {**sizes, self.batch_dim: 1}) for _ in range(PROBE_ROWS)]
            alone = [self._run(r) for r in rows]
            both = self._run({t.name: np.concatenate([r[t.name] for r in rows]) for t in self.inputs})
            return _differs([{k: v[i:i + 1] for k, v in both.items()} for i in range(PROBE_ROWS)], alone)

        return _at_some_size(check)

    def _probe_padding(self, dim: str) -> str | None:
        def check(size: int) -> str | None:
            rng = np.random.default_rng(1)
            sizes = {d: size for d in self._other_dims()} | {self.batch_dim: PROBE_ROWS}
            feeds = self._sample(rng, sizes)
            longer = sizes | {dim: size + PROBE_PAD}
            alone = self._run(feeds)
            padded = self._run({t.name: _pad(feeds[t.name], t.shape, longer) for t in self.inputs})
            return _differs([{t.name: _cut(padded[t.name], t.shape, sizes) for t in self.outputs}], [alone])

        return _at_some_size(check)

    def _sample(self, rng: np.random.Generator, sizes: Mapping[str, int]) -> dict[str, np.ndarray]:
        """Probe inputs at ``sizes`` (values: the module doc)."""
        out = {}
        for t in self.inputs:
            shape = [sizes[d] if isinstance(d, str) else d for d in t.shape]
            kind = np.dtype(t.dtype).kind
            if kind == "f":
                out[t.name] = rng.standard_normal(shape).astype(t.dtype)
            elif kind == "b":
                out[t.name] = rng.integers(0, 2, shape).astype(bool)
            elif any(isinstance(d, str) and d != self.batch_dim for d in t.shape):
                out[t.name] = rng.integers(0, 2, shape).astype(t.dtype)
            else:
                out[t.name] = np.ones(shape, t.dtype)
        return out

    # --- description ----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What ``GET /metadata`` shows: the spec, inputs and outputs with their symbolic dims, the kernels
        chosen and why (from the metadata the export wrote), and how requests are batched."""
        meta = self.meta
        return {
            "model": self.path.name, "spec": meta.get("spec"), "nngraph_version": meta.get("version"),
            "fingerprint": meta.get("fingerprint"), "target": meta.get("target"),
            "opset": meta.get("opset"), "opset_reason": meta.get("opset_reason"),
            "inputs": [vars(t) for t in self.inputs], "outputs": [vars(t) for t in self.outputs],
            "dynamic": meta.get("dynamic", []), "kernels": meta.get("attention_kernels", {}),
            "lowering": meta.get("lowering", {}), "fusions": meta.get("fusions", {}),
            "kv_cache": bool(meta.get("kv_cache")),
            "batching": {"batch_dim": self.batch_dim, "padded_dims": self.paddable, "probes": self.probe_notes,
                         "instances": len(self.sessions)},
        }


class _Inputs:
    """What :func:`check_feeds` asks of a session (its inputs), read once."""

    def __init__(self, inputs: list[Any]) -> None:
        self.inputs = inputs

    def get_inputs(self) -> list[Any]:
        return self.inputs


_ORT = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
        "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16", "tensor(int8)": "int8",
        "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def _tensor(arg: Any, meta: dict[str, Any]) -> Tensor:
    """An ORT input/output with the spec's dim names (:func:`spec_dims`); "?" for a dim nothing names."""
    shape = [d if isinstance(d, int) and d >= 0 else (d if isinstance(d, str) and d else "?") for d in arg.shape]
    return Tensor(arg.name, spec_dims(meta, arg.name, shape), _ORT.get(arg.type, arg.type))


def _batch_dim(inputs: list[Tensor], outputs: list[Tensor]) -> str | None:
    firsts = {t.shape[0] if t.shape else None for t in inputs + outputs}
    (first,) = firsts if len(firsts) == 1 else (None,)
    return first if isinstance(first, str) and first != "?" else None


def _pad(arr: np.ndarray, shape: list[Any], sizes: Mapping[str, int]) -> np.ndarray:
    """``arr`` padded with zeros at the end of every axis whose dim is in ``sizes`` (batch dim excluded)."""
    widths = [(0, sizes[d] - n if i and isinstance(d, str) and d in sizes else 0)
              for i, (d, n) in enumerate(zip(shape, arr.shape))]
    return np.pad(arr, widths) if any(w for _, w in widths) else arr


def _cut(arr: np.ndarray, shape: list[Any], sizes: Mapping[str, int]) -> np.ndarray:
    """``arr`` cut back to ``sizes`` along every (non-batch) axis named there: the inverse of :func:`_pad`."""
    index = tuple(slice(0, sizes[d]) if i and isinstance(d, str) and d in sizes else slice(None)
                  for i, d in enumerate(shape))
    return np.ascontiguousarray(arr[index])


def _at_some_size(check: Callable[[int], str | None]) -> str | None:
    """``check(size)`` at the first of :data:`PROBE_SIZES` where the model runs; why it cannot run at any."""
    error = ""
    for size in PROBE_SIZES:
        try:
            return check(size)
        except InferError as exc:
            error = str(exc)
    return f"the probe does not run at sizes {', '.join(map(str, PROBE_SIZES))}: {error}"


def _differs(got: list[dict[str, np.ndarray]], want: list[dict[str, np.ndarray]]) -> str | None:
    """Why ``got`` is not ``want`` within :data:`PROBE_TOLERANCE` (None when it is)."""
    for g, w in zip(got, want):
        for name, ref in w.items():
            if g[name].shape != ref.shape:
                return f"output '{name}' has shape {list(g[name].shape)}, alone {list(ref.shape)}"
            if ref.dtype.kind not in "fc":
                if not np.array_equal(g[name], ref):
                    return f"output '{name}' differs"
                continue
            err = float(np.max(np.abs(g[name].astype(np.float64) - ref), initial=0.0))
            scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
            if not err <= PROBE_TOLERANCE * scale:
                return f"output '{name}' differs by {err:.3g} (allowed {PROBE_TOLERANCE * scale:.3g})"
    return None
