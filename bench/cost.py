"""``nngraph cost``'s estimated forward time vs the measured one, for every zoo spec at small sizes, on this CPU.

    .venv/bin/python bench/cost.py [--batch 2] [--seq 64] [--runs 3] [--threads N] [--specs gpt2_small,...]
                                   [--profile FILE.json] [--out bench/results/cost.json]

1. The roofline: without ``--profile``, this process calibrates first (``nngraph calibrate``'s measurements, at
   the same torch thread count as the timings) and writes the profile file to bench/results/cost_profile.json,
   which the estimate then reads through ``--target FILE.json`` as a user would.
2. Each spec is fused and lowered for the cpu target (the kernels the estimate assumes), built, and its forward
   timed under ``torch.no_grad()`` (median of ``--runs`` after a warm-up, bench/_timing.py ``alternate``): wall
   time and the process's CPU time (all threads).
3. The estimate is ``nngraph cost --target FILE.json``'s total. Two ratios: estimate / wall time, and estimate /
   (CPU time / threads) -- on a machine busy with other work the wall time also holds the time spent waiting
   for a core (with several threads, each parallel region waits for its slowest thread to be scheduled), which
   the CPU time does not; on an idle machine the two agree.
4. A spec is compute-bound when its arithmetic intensity (forward FLOPs / bytes the nodes read and write) is
   above the profile's ridge point (peak FLOP/s / bandwidth: else ``memory``) and the estimate outweighs the
   dispatch cost of the aten ops its forward runs (counted with a TorchDispatchMode, × the profile's
   ``op_overhead_ms``: else ``dispatch``, a small model whose time is Python and dispatch). The estimate
   charges each node its declared aten kernels × the profile's ``kernel_ms`` (a small model's typical kernel,
   dispatch and work) besides the roofline. Goal: within 2x for compute-bound specs. The load average is
   recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _timing import RESULTS, alternate, machine, write  # noqa: E402

from nngraph.compilers.passes import run_passes  # noqa: E402
from nngraph.compilers.torch import build_module  # noqa: E402
from nngraph.compilers.torch.check import random_inputs  # noqa: E402
from nngraph.cost.report import cost_report, sizes_for  # noqa: E402
from nngraph.io import write_text_atomic  # noqa: E402
from nngraph.spec import check_spec  # noqa: E402


class _CountOps(TorchDispatchMode):
    """Counts the aten ops a forward dispatches (each pays the profile's ``op_overhead_ms``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def aten_ops(module: torch.nn.Module, inputs: dict) -> int:
    """The aten ops one forward of ``module`` dispatches."""
    with torch.no_grad(), _CountOps() as counter:
        module(**inputs)
    return counter.ops


def bound(rep: dict, roof: dict, ops: int) -> tuple[str, float, float, float]:
    """(compute | memory | dispatch, arithmetic intensity FLOP/byte, the profile's ridge point FLOP/byte, dispatch ms).

    memory: intensity below the ridge point (peak FLOP/s / bandwidth); dispatch: the aten ops the forward
    dispatches (counted) × the profile's cost of one (``op_overhead_ms``) exceed the estimate, i.e. the fixed
    costs the per-node overhead stands for outweigh the work; else compute."""
    flops = rep["totals"]["flops_forward"]
    intensity = flops / (sum(n.get("io_bytes", 0) for n in rep["nodes"]) or 1)
    ridge = roof["peak_flops"]["float32"] / roof["bandwidth"]
    dispatch = ops * roof.get("op_overhead_ms", 0.0)
    kind = "memory" if intensity < ridge else "dispatch" if dispatch > rep["totals"]["ms"] else "compute"
    return kind, intensity, ridge, dispatch


def one(path: Path, batch: int, seq: int, runs: int, profile: Path, roof: dict) -> dict:
    """Estimate and measurement of one spec."""
    graph, _ = check_spec(path)
    sizes, _ = sizes_for(graph, {"batch": batch}, None)
    sizes = {k: v if k == "batch" else seq for k, v in sizes.items()}
    rep = cost_report(graph, sizes, "inference", str(profile))
    lowered, _ = run_passes(graph, "cpu", "inference", dims=sizes)
    module = build_module(lowered).eval()
    inputs = random_inputs(graph, sizes)
    ops = aten_ops(module, inputs)
    kind, intensity, ridge, dispatch = bound(rep, roof, ops)
    with torch.no_grad():
        t = alternate({"fwd": lambda: module(**inputs)}, runs)["fwd"]
    est, wall, cpu = rep["totals"]["ms"], 1000 * t["wall_median_s"], 1000 * t["cpu_median_s"]
    threads = torch.get_num_threads()
    return {"spec": path.stem, "sizes": sizes, "flops": rep["totals"]["flops_forward"], "nodes": len(rep["nodes"]),
            "aten_ops": ops, "dispatch_ms": dispatch, "intensity": intensity, "ridge": ridge, "bound": kind,
            "estimate_ms": est, "wall_ms": wall, "cpu_ms": cpu, "ratio_wall": est / wall,
            "ratio_cpu": est / (cpu / threads)}


def calibrated(path: Path, clock: str) -> dict:
    """Calibrate now (this process's thread count, ``clock``) and write the profile file at ``path``; its roofline."""
    from nngraph.compilers.targets.calibrate import profile

    data = profile(clock=clock)
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    return data["roofline"]


def _line(r: dict) -> str:
    if "error" in r:
        return f"{r['spec']:22s} error: {r['error']}"
    return (f"{r['spec']:22s} {r['flops'] / 1e9:8.3f} {r['intensity']:6.1f} {r['aten_ops']:5d} {r['dispatch_ms']:7.2f} "
            f"{r['bound']:8s} {r['estimate_ms']:9.2f} "
            f"{r['wall_ms']:9.2f} {r['cpu_ms']:9.2f} {r['ratio_wall']:6.2f} {r['ratio_cpu']:6.2f}")


def _summary(rows: list[dict]) -> str:
    ok = [r for r in rows if "error" not in r and r["bound"] == "compute"]
    wall = sum(1 for r in ok if 0.5 <= r["ratio_wall"] <= 2.0)
    cpu = sum(1 for r in ok if 0.5 <= r["ratio_cpu"] <= 2.0)
    names = ", ".join(r["spec"] for r in ok)
    return (f"compute-bound specs ({names}) within 2x: {wall}/{len(ok)} on wall time, {cpu}/{len(ok)} on CPU time "
            "per thread")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=64, help="every dim but batch (sequence length, image side, ...)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--specs", default="")
    ap.add_argument("--profile", type=Path, default=None, help="a profile file from `nngraph calibrate -o`")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="the calibration's clock (cpu: CPU time per thread, for a machine busy with other work)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    profile = args.profile or RESULTS / "cost_profile.json"
    roof = json.loads(profile.read_text())["roofline"] if args.profile else calibrated(profile, args.clock)
    print(f"profile {profile}: {roof['source']}; ridge {roof['peak_flops']['float32'] / roof['bandwidth']:.1f} "
          f"FLOP/byte; {torch.get_num_threads()} threads; load {load_before[0]:.1f}", flush=True)
    print(f"{'spec':22s} {'GFLOP':>8s} {'FLOP/B':>6s} {'ops':>5s} {'disp ms':>7s} {'bound':8s} {'est ms':>9s} {'wall ms':>9s} {'cpu ms':>9s} "
          f"{'e/wall':>6s} {'e/cpu':>6s}")
    wanted, rows = set(filter(None, args.specs.split(","))), []
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        if wanted and path.stem not in wanted:
            continue
        try:
            rows.append(one(path, args.batch, args.seq, args.runs, profile, roof))
        except Exception as exc:  # a spec the bench cannot run at these sizes is listed, not fatal
            rows.append({"spec": path.stem, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
        print(_line(rows[-1]), flush=True)
    print(_summary(rows))
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    out = write("cost", {"machine": machine(), "load_before": load_before, "load_after": os.getloadavg(),
                         "threads": torch.get_num_threads(), "profile": roof, "batch": args.batch, "seq": args.seq,
                         "rows": rows}, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
