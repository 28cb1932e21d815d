"""A target profile in a file: what ``nngraph calibrate -o FILE`` writes and ``--target FILE.json`` reads.

    {"base": "cpu",                        # the profiles.json entry it refines (kernels, dtypes, features)
     "roofline": {"peak_flops": {"float32": 1.5e10, ...},  # FLOP/s per dtype, > 0
                  "bandwidth": 4.8e9,                      # bytes/s, > 0
                  "node_overhead_ms": 0.03,                # a node call's fixed cost, >= 0 (optional)
                  "kernel_ms": 0.008,                      # one aten kernel's, >= 0 (optional: op_overhead_ms, else 0)
                  "gemm_curve": {"default": [[flops_per_call, flop_per_s], ...], "conv": [...]},  # optional
                  "threads": 2, "source": "measured: ..."}}

The file replaces the base profile's ``roofline`` entry and nothing else. It is read with nngraph's YAML
loader (JSON is YAML), so every problem is reported at its line and column (exit 1, no traceback).
Torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nngraph.errors import Diagnostics, SourcePos
from nngraph.yamlsrc import Map, load_yaml_file, pos_in

#: the suffix that makes a ``--target`` string a file rather than a profile name
SUFFIX = ".json"


def is_profile_file(target: str) -> bool:
    """Whether a ``--target`` string names a profile file (``*.json``) rather than a profile."""
    return str(target).lower().endswith(SUFFIX)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _check_curve(curves: Any, diag: Diagnostics, where: SourcePos) -> None:
    """``gemm_curve``: per op family (``default`` required), [flops per call, FLOP/s] pairs, both > 0."""
    if not isinstance(curves, dict) or "default" not in curves:
        diag.error(where, "'gemm_curve' must map op families to [[flops_per_call, flop_per_s], ...] and have "
                          "a 'default' curve", "rerun `nngraph calibrate -o FILE`")
        return
    for family, points in curves.items():
        at = pos_in(curves, family, where)
        if not isinstance(points, list) or not points or not all(
                isinstance(p, list) and len(p) == 2 and all(_positive(v) for v in p) for p in points):
            diag.error(at, f"gemm_curve.{family} must be a non-empty list of [flops_per_call, flop_per_s] pairs "
                           "of positive numbers")


def check_roofline(roof: Any, diag: Diagnostics, where: SourcePos) -> None:
    """Report every problem of a ``roofline`` entry at its position."""
    if not isinstance(roof, dict):
        diag.error(where, "'roofline' must be a mapping", '"roofline": {"peak_flops": {"float32": 1e10}, '
                                                          '"bandwidth": 5e9}')
        return
    peaks = roof.get("peak_flops")
    if not isinstance(peaks, dict) or not peaks:
        diag.error(pos_in(roof, "peak_flops", where), "'peak_flops' must map dtypes to FLOP/s",
                   '"peak_flops": {"float32": 1.5e10}')
    else:
        for dtype, value in peaks.items():
            if not _positive(value):
                diag.error(pos_in(peaks, dtype, where), f"peak_flops.{dtype} must be a positive number, got {value!r}")
    if not _positive(roof.get("bandwidth")):
        diag.error(pos_in(roof, "bandwidth", where), f"'bandwidth' must be a positive number (bytes/s), got "
                                                     f"{roof.get('bandwidth')!r}")
    for key in ("node_overhead_ms", "op_overhead_ms", "kernel_ms"):
        value = roof.get(key, 0)
        if not (value == 0 or _positive(value)):
            diag.error(pos_in(roof, key, where), f"'{key}' must be a number >= 0, got {value!r}")
    if "gemm_curve" in roof:
        _check_curve(roof["gemm_curve"], diag, pos_in(roof, "gemm_curve", where))


def load_profile_file(path: str | Path, profiles: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(base profile name, the base profile's data with the file's ``roofline``); :class:`SpecError` on a bad file."""
    data = load_yaml_file(path)
    top = data.pos if isinstance(data, Map) else SourcePos(str(path), 1, 1)
    diag = Diagnostics()
    if not isinstance(data, dict):
        diag.error(top, "a target profile file is a JSON object", '{"base": "cpu", "roofline": {...}}')
        diag.raise_if_any()
    base = data.get("base", "cpu")
    if base not in profiles:
        diag.error(pos_in(data, "base", top), f"unknown base profile {base!r}", f"use one of: {', '.join(profiles)}")
    if "roofline" not in data:
        diag.error(top, "the file has no 'roofline'", "write it with `nngraph calibrate -o FILE`")
    else:
        check_roofline(data["roofline"], diag, pos_in(data, "roofline", top))
    diag.raise_if_any()
    return base, {**profiles[base], "roofline": _plain(data["roofline"])}


def _plain(value: Any) -> Any:
    """``value`` with the loader's position-carrying mappings and lists made plain (for JSON and equality)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
