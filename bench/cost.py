"""``nngraph cost``'s estimated forward time vs the measured one, for every zoo spec at small sizes, on this CPU.

    .venv/bin/python bench/cost.py [--batch 4] [--seq 128] [--runs 5] [--specs gpt2_small,...] [--out bench/results/cost.json]

Each spec is fused and lowered for ``--target cpu`` (the kernels the estimate assumes), built, and its forward
timed under ``torch.no_grad()`` (median of ``--runs`` after a warm-up, bench/_timing.py ``alternate``). The
estimate is ``nngraph cost --target cpu``'s total: a roofline per node from the cpu profile (peak FLOP/s and
bandwidth measured by ``nngraph calibrate``) and the calibrated kernel cost per attention node. The table gives
both, their ratio (estimate / measured) and whether the model is compute-bound (most estimated time in
compute-bound nodes). Goal: within 2x for compute-bound specs. The machine is shared: ``uptime`` is recorded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _timing import alternate, machine, write  # noqa: E402

from nngraph.compilers.passes import run_passes  # noqa: E402
from nngraph.compilers.torch import build_module  # noqa: E402
from nngraph.compilers.torch.check import random_inputs  # noqa: E402
from nngraph.cost.report import cost_report, sizes_for  # noqa: E402
from nngraph.spec import check_spec  # noqa: E402


def one(path: Path, batch: int, seq: int, runs: int) -> dict:
    """Estimate and measurement of one spec."""
    graph, _ = check_spec(path)
    sizes, _ = sizes_for(graph, {"batch": batch}, None)
    sizes = {k: v if k == "batch" else seq for k, v in sizes.items()}
    rep = cost_report(graph, sizes, "inference", "cpu")
    compute = sum(n.get("ms", 0) for n in rep["nodes"] if n.get("bound") in ("compute", "kernel"))
    lowered, _ = run_passes(graph, "cpu", "inference", dims=sizes)
    module = build_module(lowered).eval()
    inputs = random_inputs(graph, sizes)
    with torch.no_grad():
        t = alternate({"fwd": lambda: module(**inputs)}, runs)["fwd"]
    est, got = rep["totals"]["ms"], 1000 * t["wall_median_s"]
    return {"spec": path.stem, "sizes": sizes, "flops": rep["totals"]["flops_forward"], "estimate_ms": est,
            "measured_ms": got, "cpu_ms": 1000 * t["cpu_median_s"], "ratio": est / got,
            "compute_bound": compute >= 0.5 * est}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--specs", default="")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    wanted = set(filter(None, args.specs.split(",")))
    rows = []
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        if wanted and path.stem not in wanted:
            continue
        try:
            rows.append(one(path, args.batch, args.seq, args.runs))
        except Exception as exc:  # a spec the bench cannot run at these sizes is listed, not fatal
            rows.append({"spec": path.stem, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
        r = rows[-1]
        if "error" in r:
            print(f"{r['spec']:24s} error: {r['error']}", flush=True)
        else:
            print(f"{r['spec']:24s} {r['flops'] / 1e9:9.3f} GFLOP  est {r['estimate_ms']:10.2f} ms  measured "
                  f"{r['measured_ms']:10.2f} ms  ratio {r['ratio']:6.2f}  "
                  f"{'compute' if r['compute_bound'] else 'memory'}", flush=True)
    ok = [r for r in rows if "error" not in r and r["compute_bound"]]
    within = sum(1 for r in ok if 0.5 <= r["ratio"] <= 2.0)
    print(f"compute-bound specs within 2x: {within}/{len(ok)}")
    path = write("cost", {"machine": machine(), "batch": args.batch, "seq": args.seq, "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
