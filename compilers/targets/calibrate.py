"""``nngraph calibrate``: measure this CPU's roofline once -- peak FLOP/s per dtype, achieved FLOP/s against
the size of a product, memory bandwidth, a node's fixed cost -- and write it as a target profile file.

* peak FLOP/s per dtype: the best of a few timed ``n×n @ n×n`` products (2n³ FLOPs each);
* ``gemm_curve``: achieved FLOP/s against FLOPs per call, for square matrix products of growing ``n``
  (``default``) and for 3×3 convolutions of growing width (``conv``, the op family that runs through
  oneDNN's convolution rather than a GEMM): a small product runs far below peak (too little work to spread
  over the threads and the vector units), and :mod:`nngraph.compilers.passes.roofline` reads a node's
  throughput off this curve at the node's FLOPs rather than assuming the peak;
* bandwidth: the best of a few copies of a tensor much larger than the caches (2 × its bytes: read + write);
* a node's fixed cost (Python dispatch, allocation): the best time of one call of a tiny module, and one aten
  op's (``op_overhead_ms``: a one-element add, dispatch alone);
* ``kernel_ms``: the mean time of one aten kernel of a small model -- the mean, over a fixed mix of the kernels
  small nodes launch (:func:`_kernel_mix`: elementwise, transcendental, reduction, softmax, concatenation, gather,
  scatter, top-k) on a [2, 64, 128] activation, of each one's best time. A node of the generated code launches
  one to dozens of them (its op's ``kernels=``); at these sizes their allocation, dispatch and per-element work,
  not the products, set a small model's time;
* ``threads``: torch's intra-op threads during the measurement (the estimate holds for that many);
* ``clock``: wall, or cpu (:data:`CLOCK`, ``--cpu-time``: for a machine busy with other work).

The result is a profile file (:mod:`.profile_file`: ``{"base": "cpu", "roofline": {...}}``) that
``nngraph cost --target FILE.json`` reads; ``source`` records the date, the cores and the machine's load.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch


#: what :func:`kernel_overhead` times its kernels on: a small model's activation [batch 2, seq 64, width 128]
KERNEL_SHAPE = (2, 64, 128)


@dataclass(frozen=True)
class Sizes:
    """What is timed: matrix side per dtype for the peak, the curves' sizes, the copied MiB, tiny calls."""

    peak: dict[str, int]
    gemm: tuple[int, ...]
    conv: tuple[tuple[int, int], ...]   # (channels, image side) of a [2, C, S, S] 3×3 convolution
    copy_mib: int
    calls: int
    kernel_shape: tuple[int, ...] = KERNEL_SHAPE


#: bfloat16 is slow on CPUs without AMX: a smaller product
FULL = Sizes({"float32": 1024, "bfloat16": 256}, (32, 64, 128, 256, 512, 1024),
             ((4, 8), (8, 16), (16, 16), (16, 32), (32, 32), (64, 28), (128, 14), (256, 14)), 256, 1000)
#: ``--quick``: the same measurements at tiny sizes, in well under a second (a smoke test, not a calibration)
QUICK = Sizes({"float32": 64, "bfloat16": 16}, (16, 32, 64), ((4, 8), (8, 8)), 4, 20, (2, 4, 8))


#: how a call is timed: the wall clock, or (``--cpu-time``) the process's CPU time divided by the threads -- the
#: time an idle machine would take, on a machine busy with other work (the wall clock there also holds the
#: time spent waiting for a core); exact with one thread, a lower bound with several
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = ["wall"]


def _now() -> float:
    return CLOCK[_clock[0]]() / (torch.get_num_threads() if _clock[0] == "cpu" else 1)


def _best(fn: Callable[[], Any], repeats: int = 5, budget_s: float = 0.05) -> float:
    """The fastest of at least ``repeats`` timed calls, more (up to 1000) while they take under ``budget_s`` in
    all: a tiny call is timed hundreds of times, so one that ran undisturbed is among them on a busy machine."""
    fn()  # warm-up: first-call allocation and thread-pool start are not the steady state
    times: list[float] = []
    while len(times) < repeats or (sum(times) < budget_s and len(times) < 1000):
        start = _now()
        fn()
        times.append(_now() - start)
    return max(min(times), 1e-9)


def peak_flops(dtype: str, n: int) -> float:
    """FLOP/s of the fastest of a few ``[n, n] @ [n, n]`` products in ``dtype`` (2n³ FLOPs each)."""
    a = torch.randn(n, n).to(getattr(torch, dtype))
    b = torch.randn(n, n).to(getattr(torch, dtype))
    return 2 * n ** 3 / _best(lambda: a @ b)


def conv_flops(channels: int, side: int) -> tuple[int, float]:
    """(FLOPs, FLOP/s) of the fastest of a few 3×3 convolutions [2, C, S, S] -> [2, C, S, S] (padding 1):
    2·2·C·C·9·S² FLOPs each."""
    x, w = torch.randn(2, channels, side, side), torch.randn(channels, channels, 3, 3)
    flops = 2 * 2 * channels * channels * 9 * side * side
    with torch.no_grad():
        return flops, flops / _best(lambda: torch.nn.functional.conv2d(x, w, padding=1))


def gemm_curve(sizes: Sizes) -> dict[str, list[list[float]]]:
    """Achieved FLOP/s against FLOPs per call: ``default`` (square products), ``conv`` (3×3 convolutions)."""
    square = [[2 * n ** 3, peak_flops("float32", n)] for n in sizes.gemm]
    conv = [list(conv_flops(c, s)) for c, s in sizes.conv]
    return {name: sorted([float(f"{x:.4g}") for x in p] for p in pts) for name, pts in
            (("default", square), ("conv", conv))}


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


def op_overhead(calls: int = 1000) -> float:
    """Seconds of one tiny torch op (``a + b`` on one element): the dispatch cost each aten op of a node pays."""
    a, b = torch.ones(1), torch.ones(1)
    return _best(lambda: [a + b for _ in range(calls)]) / calls


def _kernel_mix(shape: tuple[int, ...]) -> list[Callable[[], Any]]:
    """The kernels :func:`kernel_overhead` times, on activations of ``shape`` (rows: all dims but the last)."""
    x, y = torch.randn(*shape), torch.randn(*shape)
    flat = x.reshape(-1, shape[-1])
    rows = torch.randint(0, flat.shape[0], (flat.shape[0] // 2,))
    picked = flat[rows]
    F = torch.nn.functional
    return [lambda: x * y, lambda: x + y, lambda: F.silu(x), lambda: torch.exp(x), lambda: x.mean(-1, keepdim=True),
            lambda: torch.softmax(x, -1), lambda: torch.cat([x, y], -1), lambda: flat[rows],
            lambda: torch.zeros_like(flat).index_add_(0, rows, picked), lambda: flat.topk(2, -1)]


def kernel_overhead(shape: tuple[int, ...] = KERNEL_SHAPE) -> float:
    """Seconds of one kernel of :func:`_kernel_mix` on average: Σ best time of each / kernels in the mix (each
    timed alone, so a round that waited for a core on a busy machine costs one kernel's minimum, not the mix's)."""
    mix = _kernel_mix(shape)
    with torch.no_grad():
        return sum(_best(kernel) for kernel in mix) / len(mix)


def calibrate(sizes: Sizes = FULL, clock: str = "wall") -> dict[str, Any]:
    """The ``roofline`` profile entry measured on this machine, timed by ``clock`` (:data:`CLOCK`)."""
    _clock[0] = clock
    try:
        return _measure(sizes, clock)
    finally:
        _clock[0] = "wall"


def _measure(sizes: Sizes, clock: str) -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    today = datetime.date.today().isoformat()
    quick = " (--quick: tiny sizes, not a calibration)" if sizes == QUICK else ""
    return {"peak_flops": {dt: float(f"{peak_flops(dt, n):.3g}") for dt, n in sizes.peak.items()},
            "bandwidth": float(f"{bandwidth(sizes.copy_mib):.3g}"),
            "node_overhead_ms": float(f"{1e3 * node_overhead(sizes.calls):.3g}"),
            "op_overhead_ms": float(f"{1e3 * op_overhead(sizes.calls):.3g}"),
            "kernel_ms": float(f"{1e3 * kernel_overhead(sizes.kernel_shape):.3g}"),
            "gemm_curve": gemm_curve(sizes), "threads": torch.get_num_threads(), "clock": clock,
            "source": f"measured: nngraph calibrate{quick}, {os.cpu_count()} cores, {torch.get_num_threads()} "
                      f"threads, {clock} clock (load {load:.1f}), torch {torch.__version__}, {today}"}


def profile(sizes: Sizes = FULL, clock: str = "wall", base: str = "cpu") -> dict[str, Any]:
    """The profile file's content (:mod:`.profile_file`): the base profile and the measured roofline."""
    return {"base": base, "roofline": calibrate(sizes, clock)}
