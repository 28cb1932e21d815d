"""Message passing with edge-list scatter (the torch back end's) vs a dense-adjacency implementation.

A random directed graph (``--nodes`` nodes, ``--edges`` edges, default 10,000 and 200,000, ``--features``
64 in and out). Two layers, each in two implementations computing the same result:

* sum aggregation h_v = Σ_{u→v} x_u: ``scatter`` gathers x[src] and index_adds at dst
  (:func:`nngraph.compilers.torch.ops.graph_nn.scatter`); ``dense`` builds A [N, N] from edge_index and
  computes Aᵀ x;
* a GCN layer D̃^-1/2 (A + I) D̃^-1/2 X Θ + b: ``scatter`` is :class:`GCNConv` (normalized edge weights,
  gather, index_add); ``dense`` builds Ã and its normalization as [N, N] matrices and multiplies.

Both sides include building their graph structure from edge_index on every call, as a layer does.
Time: one process, variants alternating each round, medians of ``--runs`` rounds (forward, no grad).
Peak memory, two ways: (1) the peak of bytes held by tensors allocated during one call, from the
allocation/free events of ``torch.profiler`` (``profile_memory=True``; on CUDA max_memory_allocated);
(2) the growth of the peak resident set size (VmHWM) of a fresh child process across one call
after its inputs exist -- includes allocator overhead, excludes the inputs. tracemalloc is not used: it
does not see torch's allocations.

Usage:  .venv/bin/python bench/message_passing.py [--nodes 10000] [--edges 200000] [--features 64] [--runs 5]
Writes bench/results/message_passing.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import alternate, machine, ms, peak_tensor_bytes, write  # noqa: E402
from nngraph.compilers.torch.ops.graph_nn import GCNConv, scatter  # noqa: E402


def setup(nodes: int, edges: int, features: int, device: str = "cpu"):
    g = torch.Generator().manual_seed(0)
    ei = torch.randint(0, nodes, (2, edges), generator=g).to(device)
    x = torch.randn(nodes, features, generator=g).to(device)
    torch.manual_seed(0)
    conv = GCNConv(features, features).to(device)
    with torch.no_grad():
        conv.bias.normal_()
    return ei, x, conv


def variants(ei: torch.Tensor, x: torch.Tensor, conv: GCNConv) -> dict:
    n = x.shape[0]

    def sum_scatter():
        return scatter(x[ei[0]], ei[1], n, "sum")

    def sum_dense():
        a = torch.zeros(n, n, device=x.device)
        a.index_put_((ei[0], ei[1]), torch.ones(ei.shape[1], device=x.device), accumulate=True)
        return a.T @ x

    def gcn_scatter():
        return conv(x, ei)

    def gcn_dense():
        a = torch.zeros(n, n, device=x.device)
        a.index_put_((ei[1], ei[0]), torch.ones(ei.shape[1], device=x.device), accumulate=True)  # a[v, u]: u -> v
        diag = torch.diagonal(a)
        diag.copy_(torch.where(diag > 0, diag, torch.ones_like(diag)))  # keep existing loops, add missing ones
        dis = a.sum(1).pow(-0.5)
        a = dis[:, None] * a * dis[None, :]
        return a @ conv.lin(x) + conv.bias

    return {"sum/scatter": sum_scatter, "sum/dense": sum_dense, "gcn/scatter": gcn_scatter, "gcn/dense": gcn_dense}


def peak_rss_bytes() -> int:
    """This process's peak resident set size: VmHWM of /proc/self/status (per address space, so not inherited
    from the parent as ``ru_maxrss`` is across fork + exec), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args) -> None:
    """Peak RSS growth of one call of one variant in this fresh process (printed as JSON)."""
    ei, x, conv = setup(args.nodes, args.edges, args.features)
    fn = variants(ei, x, conv)[args.child]
    before = peak_rss_bytes()
    with torch.no_grad():
        fn()
    print(json.dumps({"rss_peak_growth_bytes": peak_rss_bytes() - before}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--edges", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-rss", action="store_true", help="skip the child-process RSS measurement")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0

    dev = args.device
    ei, x, conv = setup(args.nodes, args.edges, args.features, dev)
    fns = variants(ei, x, conv)
    with torch.no_grad():
        diffs = {layer: (fns[f"{layer}/scatter"]() - fns[f"{layer}/dense"]()).abs().max().item() for layer in ("sum", "gcn")}

    def nograd(fn):
        def run():
            with torch.no_grad():
                return fn()
        return run

    times = alternate({k: nograd(f) for k, f in fns.items()}, args.runs, dev)
    peaks = {k: peak_tensor_bytes(nograd(f), dev) for k, f in fns.items()}
    rss = {}
    if not args.no_rss and dev == "cpu":
        for k in fns:
            cmd = [sys.executable, __file__, "--child", k, "--nodes", str(args.nodes), "--edges", str(args.edges),
                   "--features", str(args.features)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rss[k] = json.loads(out.stdout.strip().splitlines()[-1])["rss_peak_growth_bytes"]

    result = {
        "config": {"nodes": args.nodes, "edges": args.edges, "features": args.features, "device": dev,
                   "dtype": "float32"},
        "max_abs_diff_scatter_vs_dense": diffs,
        "time": times,
        "peak_tensor_bytes": peaks,
        "rss_peak_growth_bytes": rss,
        "speedup_wall": {layer: times[f"{layer}/dense"]["wall_median_s"] / times[f"{layer}/scatter"]["wall_median_s"]
                         for layer in ("sum", "gcn")},
        "memory_ratio": {layer: peaks[f"{layer}/dense"] / max(peaks[f"{layer}/scatter"], 1) for layer in ("sum", "gcn")},
        "memory_method": "peak of torch.profiler allocation/free events during one call (CUDA: max_memory_allocated); "
                         "rss: peak RSS (VmHWM) growth across one call in a fresh child process",
        "machine": machine(),
    }
    path = write("message_passing", result, args.out)

    mb = lambda b: f"{b / 2**20:10.1f}"  # noqa: E731
    print(f"message passing: {args.nodes} nodes, {args.edges} random edges, {args.features} features, {dev}, "
          f"{args.runs} alternating runs")
    print(f"{'layer/impl':<14} {'median ms':>9} {'min ms':>9} {'cpu ms':>9} {'tensor MiB':>10} {'RSS MiB':>10}")
    for k in fns:
        t = times[k]
        print(f"{k:<14} {ms(t['wall_median_s'])} {ms(t['wall_min_s'])} {ms(t['cpu_median_s'])} {mb(peaks[k])} "
              f"{mb(rss[k]) if k in rss else '         -'}")
    for layer in ("sum", "gcn"):
        print(f"{layer}: scatter is {result['speedup_wall'][layer]:.1f}x faster and needs "
              f"{result['memory_ratio'][layer]:.0f}x less tensor memory than dense (max |diff| {diffs[layer]:.1e})")
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
