"""MoE dispatch: grouped by expert (the torch back end's) vs every expert on every token (dense).

Both variants share the router (linear, softmax, top-k, renormalized gates) and the expert weights
(:class:`nngraph.compilers.torch.ops.moe.MoE`, SwiGLU experts); they differ only in how the experts run:

* grouped -- token-expert assignments sorted by expert, each expert once on its gathered tokens,
  gate-weighted results scatter-added back (``grouped_dispatch``): N·k expert rows;
* dense   -- every expert on all N tokens, outputs weighted by the gates (zero off the top k) and
  summed (``dense_moe``): N·m expert rows.

Timed in one process, alternating the variants each round, medians of ``--runs`` rounds: inference
(no grad) and a training step (forward + backward of a squared-output loss). Goal: grouped >= 2.5x
faster than dense at 8 experts, top-2, 4096 tokens, d_model 512.

Usage:  .venv/bin/python bench/moe_dispatch.py [--tokens 4096] [--d-model 512] [--experts 8] [--top-k 2]
        [--hidden 1792] [--runs 10] [--device cpu|cuda]
Writes bench/results/moe_dispatch.json and prints a table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import alternate, machine, ms, write  # noqa: E402
from nngraph.compilers.torch.ops.moe import MoE, dense_moe, grouped_dispatch, route  # noqa: E402

GOAL = 2.5


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=1792, help="SwiGLU expert width (default 3.5 x d_model, as Mixtral)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    dev = args.device
    moe = MoE(args.d_model, args.experts, args.top_k, "swiglu", args.hidden).to(dev)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.02)
    x = torch.randn(args.tokens, args.d_model, device=dev)

    def routed(inp):
        _, gates, idx = route(moe.router(inp), args.top_k, True)
        return gates, idx

    def grouped(inp):
        gates, idx = routed(inp)
        return grouped_dispatch(inp, idx, gates, moe.experts)[0]

    def dense(inp):
        gates, idx = routed(inp)
        full = torch.zeros(inp.shape[0], args.experts, device=inp.device).scatter(1, idx, gates)
        return dense_moe(inp, full, moe.experts)

    def train_step(fn):
        def run():
            moe.zero_grad(set_to_none=True)
            xi = x.detach().requires_grad_(True)
            fn(xi).square().mean().backward()
        return run

    with torch.no_grad():
        diff = (grouped(x) - dense(x)).abs().max().item()
        counts = torch.bincount(routed(x)[1].reshape(-1), minlength=args.experts).tolist()

    def infer(fn):
        def run():
            with torch.no_grad():
                fn(x)
        return run

    inference = alternate({"grouped": infer(grouped), "dense": infer(dense)}, args.runs, dev)
    training = alternate({"grouped": train_step(grouped), "dense": train_step(dense)}, max(3, args.runs // 2), dev)

    flops_row = 3 * 2 * args.d_model * args.hidden  # gate, up, down matmuls per token row
    result = {
        "config": {"tokens": args.tokens, "d_model": args.d_model, "experts": args.experts, "top_k": args.top_k,
                   "hidden": args.hidden, "expert": "swiglu", "device": dev, "dtype": "float32"},
        "expert_rows": {"grouped": args.tokens * args.top_k, "dense": args.tokens * args.experts},
        "expert_gflop": {"grouped": args.tokens * args.top_k * flops_row / 1e9,
                         "dense": args.tokens * args.experts * flops_row / 1e9},
        "tokens_per_expert": counts,
        "max_abs_diff_grouped_vs_dense": diff,
        "inference": inference,
        "train_step": training,
        "speedup_inference_wall": inference["dense"]["wall_median_s"] / inference["grouped"]["wall_median_s"],
        "speedup_train_wall": training["dense"]["wall_median_s"] / training["grouped"]["wall_median_s"],
        "speedup_inference_cpu": inference["dense"]["cpu_median_s"] / inference["grouped"]["cpu_median_s"],
        "goal_speedup": GOAL,
        "machine": machine(),
    }
    result["meets_goal"] = result["speedup_inference_wall"] >= GOAL and result["speedup_train_wall"] >= GOAL
    path = write("moe_dispatch", result, args.out)

    print(f"MoE dispatch: {args.tokens} tokens, d_model {args.d_model}, {args.experts} SwiGLU experts "
          f"(hidden {args.hidden}), top-{args.top_k}, {dev}, {args.runs} alternating runs")
    print(f"tokens per expert: {counts}; grouped vs dense max |diff| = {diff:.2e}")
    print(f"{'variant':<10} {'phase':<11} {'median ms':>9} {'min ms':>9} {'cpu ms':>9}  expert rows")
    for phase, res in (("inference", inference), ("train step", training)):
        for name in ("grouped", "dense"):
            r = res[name]
            print(f"{name:<10} {phase:<11} {ms(r['wall_median_s'])} {ms(r['wall_min_s'])} {ms(r['cpu_median_s'])}  "
                  f"{result['expert_rows'][name]}")
    print(f"speed-up grouped vs dense: inference {result['speedup_inference_wall']:.2f}x, "
          f"train step {result['speedup_train_wall']:.2f}x (wall medians; goal >= {GOAL}x: "
          f"{'met' if result['meets_goal'] else 'NOT met'})")
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
