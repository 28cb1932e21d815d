"""Selective-scan variants of the mamba op: sequential (one step per position) vs chunked (all chunks
scanned together, state carried between chunks), for several chunk sizes.

Inputs are those of a mamba block: u, Δ [batch, seq, d_inner], A [d_inner, d_state], B, C [batch, seq,
d_state] (random, Δ = softplus of a normal, A = −exp of a normal). Two shapes by default: a training-size
one (batch 4, seq 1024, d_inner 256: per-step tensors of 16k elements, memory-bound on a CPU) and a
small-state long sequence (batch 1, seq 4096, d_inner 64: per-step work dominated by per-op overhead).
Timed in one process, the variants alternating each round, medians of ``--runs`` rounds, for the forward
alone (no grad) and forward + backward; outputs are checked against the sequential scan (max |diff|).

Usage:  .venv/bin/python bench/ssm_scan.py [--shapes 4x1024x256,1x4096x64] [--d-state 16]
        [--chunks 16,64,256] [--runs 5] [--device cpu|cuda] [--threads N]
Writes bench/results/ssm_scan.json and prints a table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import alternate, machine, ms, write  # noqa: E402
from nngraph.compilers.torch.ops.ssm import selective_scan_chunked, selective_scan_sequential  # noqa: E402


def bench_shape(b: int, t: int, d: int, n: int, chunks: list[int], runs: int, dev: str) -> dict:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(b, t, d, generator=g)
    delta = F.softplus(torch.randn(b, t, d, generator=g) - 2)
    A = -torch.exp(torch.randn(d, n, generator=g))
    B, C, D = torch.randn(b, t, n, generator=g), torch.randn(b, t, n, generator=g), torch.randn(d, generator=g)
    inputs = [v.to(dev) for v in (u, delta, A, B, C, D)]

    fns = {"sequential": lambda *a: selective_scan_sequential(*a)}
    for c in chunks:
        fns[f"chunked/{c}"] = lambda *a, c=c: selective_scan_chunked(*a, chunk_size=c)

    with torch.no_grad():
        ref = fns["sequential"](*inputs)
        diffs = {k: (f(*inputs) - ref).abs().max().item() for k, f in fns.items() if k != "sequential"}
        scale = ref.abs().max().item()

    def forward(fn):
        def run():
            with torch.no_grad():
                fn(*inputs)
        return run

    def train(fn):
        def run():
            leaves = [v.detach().requires_grad_(True) for v in inputs]
            fn(*leaves).square().mean().backward()
        return run

    fwd = alternate({k: forward(f) for k, f in fns.items()}, runs, dev)
    bwd = alternate({k: train(f) for k, f in fns.items()}, max(2, runs // 2), dev)
    return {
        "shape": {"batch": b, "seq": t, "d_inner": d, "d_state": n},
        "max_abs_diff_vs_sequential": diffs, "max_abs_output": scale,
        "forward": fwd, "forward_backward": bwd,
        "speedup_forward_wall": {k: fwd["sequential"]["wall_median_s"] / v["wall_median_s"] for k, v in fwd.items()},
        "speedup_forward_backward_wall": {k: bwd["sequential"]["wall_median_s"] / v["wall_median_s"]
                                          for k, v in bwd.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="4x1024x256,1x4096x64", help="BATCHxSEQxD_INNER, comma-separated")
    ap.add_argument("--d-state", type=int, default=16)
    ap.add_argument("--chunks", default="16,64,256")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 gives steadier figures on a machine busy with other work)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    chunks = [int(c) for c in args.chunks.split(",") if c]
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",") if s]
    results = [bench_shape(b, t, d, args.d_state, chunks, args.runs, args.device) for b, t, d in shapes]
    result = {"config": {"d_state": args.d_state, "chunks": chunks, "device": args.device, "dtype": "float32",
                         "runs": args.runs}, "shapes": results, "machine": machine()}
    path = write("ssm_scan", result, args.out)

    print(f"selective scan: d_state {args.d_state}, {args.device}, {torch.get_num_threads()} torch threads, "
          f"{args.runs} alternating runs (cpu = process CPU time)")
    for r in results:
        sh = r["shape"]
        print(f"-- batch {sh['batch']}, seq {sh['seq']}, d_inner {sh['d_inner']} (max |y| {r['max_abs_output']:.1f})")
        print(f"{'variant':<14} {'fwd ms':>9} {'fwd cpu':>9} {'x seq':>6} {'fwd+bwd ms':>10} {'cpu':>9} {'x seq':>6}"
              f"  max|diff|")
        for k in r["forward"]:
            f, w = r["forward"][k], r["forward_backward"][k]
            print(f"{k:<14} {ms(f['wall_median_s'])} {ms(f['cpu_median_s'])} {r['speedup_forward_wall'][k]:6.2f} "
                  f"{ms(w['wall_median_s']):>10} {ms(w['cpu_median_s'])} {r['speedup_forward_backward_wall'][k]:6.2f}"
                  f"  {r['max_abs_diff_vs_sequential'].get(k, 0.0):.1e}")
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
