"""The server's fast .npz bodies (compilers/serve/npz.py) against the oracles: numpy.savez / numpy.load and the
general reader (nngraph.readers.read_npz); anything outside the plain layout is left to the general reader."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from nngraph import readers
from nngraph.compilers.serve import npz

RNG = np.random.default_rng(0)
CASES = [
    {"tokens": RNG.integers(1, 1024, (1, 8)), "token_types": np.zeros((1, 8), np.int64), "lengths": np.array([8])},
    {"a": np.asfortranarray(RNG.standard_normal((3, 4)).astype(np.float32)), "b": np.array(3.5),
     "c": np.zeros((0, 3), bool), "d": np.arange(5, dtype=">i4"), "e": RNG.standard_normal((2, 3)).astype(np.float16)},
]


def _savez(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("arrays", CASES)
def test_read_gives_what_the_general_reader_gives(arrays):
    body = _savez(arrays)
    got, want = npz.read(body, 1 << 20), readers.read_npz(io.BytesIO(body), 1 << 20, "body")
    assert got is not None and list(got) == list(want) == list(arrays)
    for name, ref in want.items():
        assert got[name].dtype == ref.dtype and got[name].shape == ref.shape
        assert np.array_equal(got[name], ref) and got[name].flags.writeable


@pytest.mark.parametrize("arrays", CASES)
def test_write_is_what_numpy_load_reads(arrays):
    body = npz.write(arrays)
    assert zipfile.ZipFile(io.BytesIO(body)).testzip() is None  # every member's CRC-32 checks
    back = np.load(io.BytesIO(body))
    assert list(back.files) == list(arrays)
    for name, ref in arrays.items():
        assert back[name].dtype == ref.dtype and back[name].shape == ref.shape and np.array_equal(back[name], ref)


def test_anything_else_is_left_to_the_general_reader():
    body = _savez(CASES[0])
    damaged = bytearray(body)
    damaged[body.index(b"NUMPY") + 60] ^= 1  # a byte of the first member: its CRC-32 no longer matches
    assert npz.read(_savez(CASES[0], compressed=True), 1 << 20) is None
    assert npz.read(bytes(damaged), 1 << 20) is None
    assert npz.read(body, 8) is None  # over the size limit: the general reader refuses it with the reason
    assert npz.read(b"PK\x03\x04 not a zip", 1 << 20) is None and npz.read(b"", 1 << 20) is None
