"""``nngraph calibrate``: measure this CPU's roofline (peak FLOP/s per dtype, memory bandwidth) once.

Peak FLOP/s is the best of a few timed ``n×n @ n×n`` products (2n³ FLOPs each) per dtype; bandwidth is
the best of a few copies of a tensor much larger than the caches (2 × its bytes moved: read + write); a node's
fixed cost (Python dispatch, allocation) is the best time of one call of a tiny module.
The result is the ``roofline`` entry of a profile in ``compilers/targets/profiles.json``, which
``nngraph cost --target`` reads; it is printed as JSON, with the date and the machine's load in ``source``.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any, Callable

import torch

#: the dtypes timed, and the matrix size for each (bfloat16 is slow on CPUs without AMX: a smaller product)
DTYPES = {"float32": 1024, "bfloat16": 256}


def _best(fn: Callable[[], Any], repeats: int = 5) -> float:
    fn()  # warm-up: first-call allocation and thread-pool start are not the steady state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_flops(dtype: str, n: int) -> float:
    """FLOP/s of the fastest of a few ``[n, n] @ [n, n]`` products in ``dtype`` (2n³ FLOPs each)."""
    a = torch.randn(n, n).to(getattr(torch, dtype))
    b = torch.randn(n, n).to(getattr(torch, dtype))
    return 2 * n ** 3 / _best(lambda: a @ b)


def bandwidth(mib: int = 256) -> float:
    """Bytes/s of the fastest of a few copies of a ``mib`` MiB float32 tensor (read + write)."""
    x = torch.randn(mib * 2 ** 20 // 4)
    y = torch.empty_like(x)
    return 2 * x.numel() * 4 / _best(lambda: y.copy_(x))


def node_overhead(calls: int = 1000) -> float:
    """Seconds of one call of a tiny module (``nn.Linear(4, 4)`` on one row): a node's fixed cost, whatever its size."""
    m, x = torch.nn.Linear(4, 4), torch.randn(1, 4)
    with torch.no_grad():
        return _best(lambda: [m(x) for _ in range(calls)]) / calls


def calibrate() -> dict[str, Any]:
    """The ``roofline`` profile entry measured on this machine."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    today = datetime.date.today().isoformat()
    return {"peak_flops": {dt: float(f"{peak_flops(dt, n):.3g}") for dt, n in DTYPES.items()},
            "bandwidth": float(f"{bandwidth():.3g}"),
            "node_overhead_ms": float(f"{1e3 * node_overhead():.3g}"),
            "source": f"measured: nngraph calibrate, {os.cpu_count()} cores (load {load:.1f}), "
                      f"torch {torch.__version__}, {today}"}
