"""nngraph.readers: regular files only, sizes from fstat and from .npy headers / zip directories, before reading."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from hostile.hostile_fixtures import zip_bomb
from nngraph import readers
from nngraph.readers import FileRefused


@pytest.fixture
def small_machine(monkeypatch):
    """A machine of 64 MiB: caps become small enough for small test files."""
    monkeypatch.setattr(readers, "machine_memory", lambda: 64 << 20)


def test_a_fifo_is_refused_as_not_a_regular_file_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # no writer: a blocking open would hang here
    with pytest.raises(FileRefused) as info:
        readers.open_regular(fifo, None, "data file")
    assert str(info.value) == (f"data file '{fifo}' is not a regular file (it is a FIFO (named pipe)); "
                               "only regular files are read")


@pytest.mark.parametrize("path, kind", [("/dev/zero", "a character device"), (".", "a folder")])
def test_devices_and_folders_are_refused_by_kind(path, kind):
    with pytest.raises(FileRefused) as info:
        readers.read_bytes(path, 1 << 20, "weights file")
    assert str(info.value) == f"weights file '{path}' is not a regular file (it is {kind}); only regular files are read"


def test_a_missing_file_is_not_found(tmp_path):
    with pytest.raises(FileRefused, match=r"^data file '.*nope.csv' not found$"):
        readers.check_regular(tmp_path / "nope.csv", None, "data file")


def test_a_sparse_giant_is_refused_from_its_size_before_reading(tmp_path, small_machine):
    big = tmp_path / "big.csv"
    with open(big, "wb") as fh:
        fh.truncate(8 * 10**9)  # 8 GB on paper, nothing on disk
    with pytest.raises(FileRefused) as info:
        readers.read_bytes(big, readers.memory_cap(readers.TEXT_SHARE), "data file")
    assert str(info.value) == (f"data file '{big}' is 8.0 GB, over the 2.1 MB limit on this machine "
                               "(a share of its 67.1 MB memory)")


def test_caps_are_shares_of_the_machine_memory(small_machine):
    assert readers.memory_cap(readers.TENSOR_SHARE) == 32 << 20
    assert readers.memory_cap(readers.BINARY_SHARE) == 16 << 20 and readers.memory_cap(readers.TEXT_SHARE) == 2 << 20


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.int16).reshape(3, 4), np.asfortranarray(np.eye(3)),
                                   np.zeros((0, 5), np.float32), np.array(7.5)])
def test_npy_and_npz_read_back_as_numpy_writes_them(tmp_path, array):
    np.save(tmp_path / "a.npy", array)
    np.savez_compressed(tmp_path / "a.npz", a=array, b=np.ones(2))
    got = readers.npy_file(tmp_path / "a.npy", 1 << 20, "input file")
    assert got.dtype == array.dtype and np.array_equal(got, array)
    both = readers.npz_file(tmp_path / "a.npz", 1 << 20, "input file")
    assert sorted(both) == ["a", "b"] and np.array_equal(both["a"], array)
    assert list(readers.npz_file(tmp_path / "a.npz", 1 << 20, "input file", ["b", "zz"])) == ["b"]


def test_a_forged_npy_header_is_refused_before_allocating(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    (tmp_path / "f.npy").write_bytes(buf.getvalue() + bytes(64))
    with pytest.raises(FileRefused) as info:
        readers.npy_file(tmp_path / "f.npy", 1 << 50, "input file")
    assert str(info.value) == (f"input file '{tmp_path / 'f.npy'}': the header declares 8.0 TB of data "
                               "([1000000, 1000000] float64) but the file holds 64 bytes: truncated or forged")
    with pytest.raises(FileRefused, match=r"f.npy': the array \[1000000, 1000000\] float64 is 8.0 TB, over the "
                                          r"1.0 MB limit"):
        readers.npy_file(tmp_path / "f.npy", 1 << 20, "input file")


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileRefused, match=r"object arrays need pickle, which is refused \(dtype object\)"):
        readers.npy_file(tmp_path / "o.npy", 1 << 20, "data file")


def test_a_zip_bomb_is_refused_from_the_zip_directory_before_inflating(tmp_path):
    bomb = tmp_path / "bomb.npz"
    zip_bomb(bomb, "x", 1 << 26)  # 64 MiB of zeros deflated to ~64 KB
    with pytest.raises(FileRefused, match=r"bomb.npz' array 'x': 65.3 KB inflate to 67.1 MB \(over 200x\): "
                                          r"refused as a zip bomb; save it uncompressed \(numpy.savez\)$"):
        readers.npz_file(bomb, 1 << 40, "data file")
    with pytest.raises(FileRefused, match=r"bomb.npz' array 'x': the member \(as the zip directory declares\) is "
                                          r"67.1 MB, over the 1.0 MB limit"):
        readers.npz_file(bomb, 1 << 20, "data file")
    assert readers.npz_names(bomb, "data file") == ["x"]


def test_a_file_that_is_not_a_zip_is_refused_as_npz(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"\x80\x04junk")
    with pytest.raises(FileRefused, match=r"d.npz' is not a readable .npz archive"):
        readers.npz_names(tmp_path / "d.npz", "data file")


def test_read_bytes_reads_a_file_whole_and_refuses_one_over_the_cap(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"x" * 100)
    assert readers.read_bytes(tmp_path / "t.txt", 100, "data file") == b"x" * 100
    with pytest.raises(FileRefused, match=r"t.txt' is 100 bytes, over the 99 bytes limit on this machine"):
        readers.read_bytes(tmp_path / "t.txt", 99, "data file")
    assert readers.read_bytes(tmp_path / "t.txt", 1 << 40, "data file") == b"x" * 100  # a huge cap costs nothing
