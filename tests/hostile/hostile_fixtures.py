"""Inputs for hostile cases that are too big or too binary to write in YAML, made cheaply.

Case ``setup`` code imports these (``from hostile_fixtures import zip_bomb``): the corpus runner's folder
is on ``sys.path`` when the corpus runs.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

_CHUNK = 1 << 24


def _deflate_segment(data: bytes) -> bytes:
    """Raw deflate of ``data`` ending in a full flush: byte-aligned and without references to earlier data,
    so copies of it can be concatenated into one valid stream."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)


def zip_bomb(path: str | Path, member: str, inflated: int) -> None:
    """An ``.npz`` whose one array ``member`` (float32 zeros, a multiple of 16 MiB bytes) inflates from ~1/1000
    of its size: the npy header, then one deflated 16 MiB block of zeros repeated, written as a plain zip
    by hand (compressing gigabytes for real would take a minute)."""
    header = io.BytesIO()
    import numpy as np

    np.lib.format.write_array_header_2_0(header, {"descr": "<f4", "fortran_order": False, "shape": (inflated // 4,)})
    head, zeros = header.getvalue(), bytes(_CHUNK)
    crc = zlib.crc32(head)
    for _ in range(inflated // _CHUNK):
        crc = zlib.crc32(zeros, crc)
    block = _deflate_segment(zeros)
    data = _deflate_segment(head) + block * (inflated // _CHUNK) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    name = f"{member}.npy".encode()
    size = len(head) + inflated
    fields = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0x21, crc, len(data), size)  # version, flags, deflate, time, date
    local = b"PK\x03\x04" + fields + struct.pack("<HH", len(name), 0) + name
    central = (b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, 0)
               + name)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    Path(path).write_bytes(local + data + central + end)
