"""Request and response bodies of ``/v1/infer``: JSON or ``.npz``, decoded in memory (nothing touches the disk).

JSON: ``{"inputs": {NAME: nested lists, ...}}`` -> ``{"outputs": {NAME: nested lists}, "shapes": {NAME: [..]},
"dtypes": {NAME: ".."}}``. A JSON array becomes the dtype the model's input takes: integers for an integer
input (a fraction there is refused rather than truncated), any number for a float input (as numpy converts
it), true/false for a bool input. A float32 output is written as its exact value as a Python float, whose
shortest decimal reads back to the same float32 bit for bit.

``.npz`` (``Content-Type: application/x-npz``, the bytes of ``numpy.savez``): one array per input name, dtypes
as they are (checked, not converted); the answer is an ``.npz`` of the outputs when the client accepts it
(``Accept: application/x-npz``). Archive members are size-checked before inflating (:func:`nngraph.readers.read_npz`);
the plain layout ``numpy.savez`` writes is read and written without ``zipfile`` (:mod:`.npz`, same arrays).
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable

import numpy as np

from nngraph import readers

from . import npz

NPZ = "application/x-npz"


class BodyError(ValueError):
    """A body that cannot be decoded (malformed JSON, not an archive, ...): HTTP 400 (422 for content)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decode_inputs(body: bytes, content_type: str, dtype_of: Callable[[str], np.dtype | None],
                  max_bytes: int) -> dict[str, np.ndarray]:
    """The feeds of an ``/v1/infer`` body (see the module doc)."""
    if content_type.split(";")[0].strip().lower() == NPZ:
        fast = npz.read(body, max_bytes)  # None: not the plain savez layout, or refused -- the general reader says why
        if fast is not None:
            return fast
        try:
            return readers.read_npz(io.BytesIO(body), max_bytes, "the request's .npz")
        except readers.FileRefused as exc:
            raise BodyError(str(exc)) from None
    data = parse_json(body)
    inputs = data.get("inputs") if isinstance(data, dict) else None
    if not isinstance(inputs, dict):
        raise BodyError('the body must be {"inputs": {NAME: array, ...}} (JSON) or an .npz archive '
                        f"(Content-Type: {NPZ})", 422)
    return {name: _array(name, value, dtype_of(name)) for name, value in inputs.items()}


def parse_json(body: bytes) -> Any:
    """The JSON document of a body; BodyError (400) with where it breaks."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BodyError(f"malformed JSON: {str(exc)[:200]}") from None


def _array(name: str, value: Any, dtype: np.dtype | None) -> np.ndarray:
    """A JSON value as an array of the input's dtype (an unknown name keeps numpy's, for the name check)."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, RecursionError):
        arr = np.asarray(None, dtype=object)
    if arr.dtype == object or arr.dtype.kind not in "iufb":
        raise BodyError(f"input '{name}': not a rectangular array of numbers", 422)
    if dtype is None:
        return arr
    if dtype.kind in "iu" and arr.dtype.kind not in "iu":
        raise BodyError(f"input '{name}': the model takes {dtype.name}; the JSON holds "
                        f"{'fractions' if arr.dtype.kind == 'f' else 'booleans'}", 422)
    if dtype.kind == "b" and arr.dtype.kind != "b":
        raise BodyError(f"input '{name}': the model takes bool; give true/false", 422)
    if dtype.kind in "iu" and arr.size and (arr.min() < np.iinfo(dtype).min or arr.max() > np.iinfo(dtype).max):
        raise BodyError(f"input '{name}': a value is outside {dtype.name}", 422)
    return arr.astype(dtype)


def encode_outputs(outputs: dict[str, np.ndarray], accept: str) -> tuple[bytes, str]:
    """(body, content type) of an answer: ``.npz`` when ``accept`` asks for it, else JSON."""
    if NPZ in accept.lower():
        if not any(v.dtype.hasobject for v in outputs.values()):
            return npz.write(outputs), NPZ
        buf = io.BytesIO()
        np.savez(buf, **outputs)
        return buf.getvalue(), NPZ
    doc = {"outputs": {k: v.tolist() for k, v in outputs.items()},
           "shapes": {k: list(v.shape) for k, v in outputs.items()},
           "dtypes": {k: v.dtype.name for k, v in outputs.items()}}
    return json.dumps(doc, allow_nan=True).encode(), "application/json"
