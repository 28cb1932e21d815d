"""Shared helpers of the torch benches: alternating timed runs, medians, peak tensor memory, JSON results.

* :func:`alternate` runs every variant once per round, in turn, for ``runs`` rounds after a warm-up, so
  slow drifts of a busy machine hit all variants alike; it records wall time and process CPU time
  (all threads; on a machine busy with other work the wall time includes waiting for a CPU).
* :func:`peak_tensor_bytes` is the peak of the bytes held by tensors allocated while ``fn`` runs: on
  CUDA ``torch.cuda.max_memory_allocated`` minus the memory held before; on CPU the running sum of the
  allocation/free events that ``torch.profiler`` records with ``profile_memory=True`` (tracemalloc does
  not see torch's allocator). Inputs allocated before the call are not counted.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def alternate(variants: dict[str, Callable[[], Any]], runs: int, device: str = "cpu", warmup: int = 1
              ) -> dict[str, dict[str, float]]:
    """Median/min wall and median CPU seconds per variant, from ``runs`` alternating rounds."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
            sync(device)
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(runs):
        for name, fn in variants.items():
            sync(device)
            w, c = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            samples[name].append((time.perf_counter() - w, time.process_time() - c))
    return {k: {"wall_median_s": statistics.median(s[0] for s in v), "wall_min_s": min(s[0] for s in v),
                "cpu_median_s": statistics.median(s[1] for s in v), "runs": len(v)} for k, v in samples.items()}


def peak_tensor_bytes(fn: Callable[[], Any], device: str = "cpu") -> int:
    """Peak bytes of the tensors allocated while ``fn`` runs (see the module docstring)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = fn()
        torch.cuda.synchronize()
        del out
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
        del out
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return peak


def machine() -> dict[str, Any]:
    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_avg_1m": os.getloadavg()[0]}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write(name: str, result: dict[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def ms(seconds: float) -> str:
    return f"{1000 * seconds:9.2f}"
