"""Fast ``.npz`` bodies for ``/v1/infer``: the common case (what ``numpy.savez`` writes) without ``zipfile``.

A request's ``.npz`` is a zip of *stored* (uncompressed) ``.npy`` members. Reading it through ``zipfile`` and
numpy's header parser (``ast.literal_eval`` per member) cost ~0.3 ms per small request here -- as much as a
gpt_char row's share of a batched model run, so it, not the model, capped what dynamic batching could gain.

:func:`read` walks the zip's central directory with ``struct``, checks each member's CRC-32, and parses each
``.npy`` header once per distinct header (cached: under load every request of a client carries the same
headers); it returns None for anything else -- compressed members, zip64 directories, a comment, a damaged
or refused archive -- and the caller then reads the body the general way (:func:`nngraph.readers.read_npz`,
which gives the located error). Arrays are copied out of the body (aligned, writable, a few bytes each).

:func:`write` is ``numpy.savez``'s output format (stored members, no zip64 since an answer is under 4 GiB),
written with cached ``.npy`` headers; ``numpy.load`` reads it.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np

_EOCD = struct.Struct("<IHHHHIIH")  # end of central directory, no comment
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_EOCD_SIG, _CENTRAL_SIG, _LOCAL_SIG = 0x06054B50, 0x02014B50, 0x04034B50
_DOS_DATE = 0x21  # 1980-01-01, what zipfile writes for "no date"
#: cached .npy headers (parsed for reading, written for answers); cleared when full: clients choose them
_HEADERS: dict[Any, Any] = {}
_CACHE = 256


def read(body: bytes, max_bytes: int) -> dict[str, np.ndarray] | None:
    """The arrays of a stored-member ``.npz`` body, or None when the general reader must decide (module doc)."""
    if len(body) < _EOCD.size:
        return None
    sig, disk, _, count, total, size, offset, comment = _EOCD.unpack_from(body, len(body) - _EOCD.size)
    if sig != _EOCD_SIG or disk or comment or count != total or offset + size > len(body) - _EOCD.size:
        return None
    out, pos = {}, offset
    for _ in range(count):
        if pos + _CENTRAL.size > len(body):
            return None
        (sig, _, _, flags, method, _, _, crc, csize, usize, nlen, xlen, clen, _, _, _,
         local) = _CENTRAL.unpack_from(body, pos)
        if sig != _CENTRAL_SIG or flags & 1 or method or csize != usize or local + _LOCAL.size > len(body):
            return None
        name = body[pos + _CENTRAL.size:pos + _CENTRAL.size + nlen].decode("utf-8", "replace").removesuffix(".npy")
        pos += _CENTRAL.size + nlen + xlen + clen
        lsig, *_, lnlen, lxlen = _LOCAL.unpack_from(body, local)
        start = local + _LOCAL.size + lnlen + lxlen
        data = memoryview(body)[start:start + usize]
        if lsig != _LOCAL_SIG or len(data) != usize or zlib.crc32(data) != crc:
            return None
        arr = _array(data, max_bytes)
        if arr is None or name in out:
            return None
        out[name] = arr
    return out


def _array(data: memoryview, max_bytes: int) -> np.ndarray | None:
    """The array of one ``.npy`` member (a copy), or None (unknown version, object dtype, sizes that disagree)."""
    if bytes(data[:6]) != b"\x93NUMPY" or len(data) < 10:
        return None
    wide = data[6] == 2
    hlen = struct.unpack_from("<I" if wide else "<H", data, 8)[0]
    begin = (12 if wide else 10) + hlen
    header = bytes(data[:begin])
    parsed = _HEADERS.get(header)
    if parsed is None:
        try:
            parsed = _parse(header)
        except ValueError:
            return None
        _remember(header, parsed)
    shape, fortran, dtype = parsed
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if dtype.hasobject or count * dtype.itemsize > max_bytes or count * dtype.itemsize != len(data) - begin:
        return None
    return np.frombuffer(data, dtype, count, begin).reshape(shape, order="F" if fortran else "C").copy(order="K")


def _parse(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    fh = io.BytesIO(header)
    version = fmt.read_magic(fh)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"npy version {version}")
    reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    return reader(fh)


def _remember(key: Any, value: Any) -> None:
    if len(_HEADERS) >= _CACHE:
        _HEADERS.clear()
    _HEADERS[key] = value


def _header(arr: np.ndarray) -> bytes:
    """The ``.npy`` header numpy writes for ``arr`` (version 1.0, or 2.0 when the header needs it)."""
    fmt, fh = np.lib.format, io.BytesIO()
    try:
        fmt.write_array_header_1_0(fh, fmt.header_data_from_array_1_0(arr))
    except ValueError:
        fh = io.BytesIO()
        fmt.write_array_header_2_0(fh, fmt.header_data_from_array_1_0(arr))
    return fh.getvalue()


def write(arrays: dict[str, np.ndarray]) -> bytes:
    """``numpy.savez``'s format of ``arrays`` (stored members): header, data, CRC-32 per member, directory."""
    parts, central, offset = [], [], 0
    for name, value in arrays.items():
        arr = value if value.flags.c_contiguous else value.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
        key = ("w", arr.dtype.str, arr.shape)
        header = _HEADERS.get(key)
        if header is None:
            header = _header(arr)
            _remember(key, header)
        data = memoryview(arr.reshape(-1).view(np.uint8))
        crc = zlib.crc32(data, zlib.crc32(header))
        size = len(header) + len(data)
        fname = (name + ".npy").encode()
        parts += [_LOCAL.pack(_LOCAL_SIG, 20, 0, 0, 0, _DOS_DATE, crc, size, size, len(fname), 0), fname, header,
                  data]
        central += [_CENTRAL.pack(_CENTRAL_SIG, 20, 20, 0, 0, 0, _DOS_DATE, crc, size, size, len(fname), 0, 0, 0,
                                  0, 0o600 << 16, offset), fname]
        offset += _LOCAL.size + len(fname) + size
    directory = b"".join(central)
    return b"".join(parts) + directory + _EOCD.pack(_EOCD_SIG, 0, 0, len(arrays), len(arrays), len(directory),
                                                     offset, 0)
