"""Attention kernels on the CPU: the reference (decomposed) attention vs the lowered one the rules choose.

    .venv/bin/python bench/attention.py [--lengths 256,512,...] [--runs 5] [--cases causal,...] [--out bench/results/attention.json]
    .venv/bin/python bench/attention.py --documents [--doc-lengths 128,512,2048] [--lengths 2048,4096,8192]

``--documents``: packed sequences under ``{all: [document, causal]}`` — the document kernel vs SDPA + dense mask vs
compiled FlexAttention vs SDPA is_causal (the cap on one causal run), forward and forward+backward, in one
alternating run, with each row's visible fraction and the speed-up cap 1 / it (bench/attention_documents.py;
results in bench/results/attention_documents.json).

What is timed: the attention *core* of an ``attention`` node (B=1, 8 heads, head_dim 64, fp32) —
scores, mask, position bias, softmax, weights @ v — through the real module code: the compiled
reference module and the module lowered by ``nngraph.compilers.passes`` for ``--target cpu`` (inference,
symbolic sequence length, so its plan has a tier per length range and the bench sees whatever
the rule picks at each length). The q/k/v/out projections are bypassed (q, k, v are given;
``out`` is the identity) so the table shows the kernels, not four [T, 512] matmuls both share.

Masks: causal; sliding window 256 (causal); ALiBi + causal; global token 0 + symmetric sliding
window 256 (Longformer). Lengths 256 … 8192.

* time: median wall time of alternating rounds (bench/_timing.py ``alternate``), after a warm-up
  call; FlexAttention's first call (compile + BlockMask) is reported separately as ``first_call_s``.
  The development machines are shared and noisy (identical runs minutes apart differ by up to 2×),
  so the table also gives the speedup in process CPU time ``(cpu t)``, which waiting for a core does
  not inflate; the goals are judged on wall time, from the reference and the lowered kernel timed
  alternately in one run.
* peak memory: bytes held by tensors allocated during one call, from torch.profiler's memory
  events (bench/_timing.py ``peak_tensor_bytes``); q, k, v (allocated before) are not counted.
* GFLOP/s: useful work 4·H·d·(visible query-key pairs) (q·k and p·v, 2·d FLOPs each per visible
  pair; masked pairs are not work) per second, vs the GFLOP/s of a 2048×2048 fp32 matmul measured
  in the same process right before each row (the machine is shared, so its speed drifts).
* the reference is capped at 4096: at 8192 it holds [8, 8192, 8192] fp32 scores three times over
  (~6 GiB) and takes ~10 s a call here; its 8192 time and memory are extrapolated from 4096 (×4,
  quadratic) and marked ``est``.

Goals (at seq >= 2048): causal >= 9× faster than the reference and >= 50% of the matmul rate;
sliding window >= 20× faster; peak memory linear in seq for causal and sliding window; never slower
than the reference at any length. The JSON keeps every number; the table is printed and written
next to it (``.txt``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import RESULTS, alternate, machine, peak_tensor_bytes, write  # noqa: E402

from nngraph.compilers.lowered import compile_for  # noqa: E402
from nngraph.compilers.torch import build_module  # noqa: E402
from nngraph import load_spec  # noqa: E402

H, D = 8, 64
CASES = {
    "causal": ("causal", "none"),
    "sliding_window_256": ("{type: sliding_window, window: 256}", "none"),
    "alibi_causal": ("causal", "alibi"),
    "global_sliding_window_256": ("{any: [{type: sliding_window, window: 256, causal: false}, "
                                  "{type: global_tokens, positions: [0]}]}", "none"),
}
REF_CAP = 4096
LENGTHS = "256,512,1024,2048,4096,8192"


def _spec(mask: str, position: str) -> str:
    return (f"nngraph: 1\nname: bench\ninputs:\n  x: {{shape: [batch, seq, {H * D}], dtype: float32}}\n"
            f"graph:\n  - {{name: attn, op: attention, in: x, heads: {H}, mask: {mask}, position: {position}}}\n"
            "outputs: [attn]\n")


def _core(module: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> nn.Module:
    """The module with its projections bypassed: q, k, v given, output projection = identity."""
    module.keys_values = lambda x, context, *_: (q, k, v, 0)  # type: ignore[method-assign]
    module.out = nn.Identity()
    return module


def _visible_pairs(graph, t: int) -> int:
    from nngraph.compilers.torch.ops.attention_masks import mask_tensor

    mask = graph.nodes["attn"].params["mask"]
    total = 0
    for lo in range(0, t, 512):
        m = mask_tensor(mask, 1, min(512, t - lo), t, lo)
        total += int(m.sum()) if m is not None else min(512, t - lo) * t
    return total


class _quiet:
    """Silence the profiler's C++ start/stop lines (written to the process's stdout/stderr)."""

    def __enter__(self):
        import os

        sys.stdout.flush(), sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1), os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc):
        import os

        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(self.saved[0], 1), os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)


def _matmul_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 2048 ** 3 / statistics.median(times) / 1e9


def run(lengths: list[int], runs: int, root: Path, cases: list[str] | None = None) -> dict:
    torch.manual_seed(0)
    rows = []
    for case, (mask, position) in CASES.items():
        if cases and case not in cases:
            continue
        path = root / f"{case}.yaml"
        path.write_text(_spec(mask, position))
        graph = load_spec(path)
        for t in lengths:
            q, k, v = (torch.randn(1, H, t, D) for _ in range(3))
            x = torch.empty(1, t, H * D)
            ref = _core(build_module(graph).attn.eval(), q, k, v)
            low_model, _ = compile_for(graph, "cpu", "inference")
            low = _core(low_model.attn.eval(), q, k, v)
            gflops_mm = _matmul_gflops()
            with torch.no_grad():
                t0 = time.perf_counter()
                low(x)
                first = time.perf_counter() - t0
                kernel = low.last_kernel
                variants = {"lowered": lambda: low(x)}
                if t <= REF_CAP:
                    variants["reference"] = lambda: ref(x)
                timing = alternate(variants, runs)
                if t <= REF_CAP:
                    err = (low(x) - ref(x)).abs().max().item()
                with _quiet():
                    peak_low = peak_tensor_bytes(lambda: low(x))
                    peak_ref = peak_tensor_bytes(lambda: ref(x)) if t <= REF_CAP else None
            pairs = _visible_pairs(graph, t)
            flops = 4 * H * D * pairs
            row = {"case": case, "seq": t, "kernel": kernel, "first_call_s": first,
                   "lowered_s": timing["lowered"]["wall_median_s"], "lowered_cpu_s": timing["lowered"]["cpu_median_s"],
                   "lowered_peak_bytes": peak_low,
                   "visible_pairs": pairs, "useful_gflop": flops / 1e9, "matmul_gflops": gflops_mm}
            if t <= REF_CAP:
                row.update(reference_s=timing["reference"]["wall_median_s"], reference_peak_bytes=peak_ref,
                           reference_cpu_s=timing["reference"]["cpu_median_s"], reference_estimated=False,
                           max_abs_diff=err)
            else:
                prev = next(r for r in reversed(rows) if r["case"] == case and not r["reference_estimated"])
                scale = (t / prev["seq"]) ** 2
                row.update(reference_s=prev["reference_s"] * scale, reference_peak_bytes=int(prev["reference_peak_bytes"] * scale),
                           reference_cpu_s=prev["reference_cpu_s"] * scale, reference_estimated=True, max_abs_diff=None)
            row["speedup"] = row["reference_s"] / row["lowered_s"]
            row["speedup_cpu_time"] = row["reference_cpu_s"] / row["lowered_cpu_s"]
            row["lowered_gflops"] = flops / row["lowered_s"] / 1e9
            row["pct_of_matmul"] = 100 * row["lowered_gflops"] / gflops_mm
            rows.append(row)
            print(_line(row), flush=True)
            del ref, low, low_model, q, k, v
    return {"machine": machine(), "config": {"batch": 1, "heads": H, "head_dim": D, "dtype": "float32",
                                               "lengths": lengths, "runs": runs, "reference_cap": REF_CAP},
            "rows": rows, "goals": goals(rows)}


def _mib(b: float | None) -> str:
    return "-" if b is None else f"{b / 2 ** 20:8.1f}"


HEADER = (f"{'case':<26} {'seq':>5} {'kernel':<7} {'ref ms':>10} {'low ms':>9} {'speedup':>8} {'(cpu t)':>7} "
          f"{'GFLOP/s':>8} {'%mm':>5} {'ref MiB':>9} {'low MiB':>8} {'1st call s':>10}")


def _line(r: dict) -> str:
    est = "~" if r["reference_estimated"] else " "
    return (f"{r['case']:<26} {r['seq']:>5} {r['kernel']:<7} {est}{1000 * r['reference_s']:>9.1f} "
            f"{1000 * r['lowered_s']:>9.1f} {r['speedup']:>7.1f}x {r['speedup_cpu_time']:>6.1f}x {r['lowered_gflops']:>8.1f} "
            f"{r['pct_of_matmul']:>4.0f}% {est}{_mib(r['reference_peak_bytes'])} {_mib(r['lowered_peak_bytes'])} "
            f"{r['first_call_s']:>10.2f}")


def goals(rows: list[dict]) -> dict:
    """Each goal with its verdict and the numbers behind it."""
    def sel(case, lo=2048):
        return [r for r in rows if r["case"] == case and r["seq"] >= lo and not r["reference_estimated"]]

    def linear(case):
        rs = sorted((r for r in rows if r["case"] == case and r["seq"] >= 1024), key=lambda r: r["seq"])
        ratios = [(b["lowered_peak_bytes"] / a["lowered_peak_bytes"]) / (b["seq"] / a["seq"]) for a, b in zip(rs, rs[1:])]
        return ratios

    def every(rs, ok):
        return bool(rs) and all(ok(r) for r in rs)

    out = {
        "causal_9x": {"speedups": [round(r["speedup"], 2) for r in sel("causal")],
                      "ok": every(sel("causal"), lambda r: r["speedup"] >= 9)},
        "causal_50pct_matmul": {"pct": [round(r["pct_of_matmul"], 1) for r in sel("causal")],
                                "ok": every(sel("causal"), lambda r: r["pct_of_matmul"] >= 50)},
        "sliding_window_20x": {"speedups": [round(r["speedup"], 2) for r in sel("sliding_window_256")],
                               "ok": every(sel("sliding_window_256"), lambda r: r["speedup"] >= 20)},
        "never_slower": {"slowest_speedup": round(min(r["speedup"] for r in rows if not r["reference_estimated"]), 2),
                         "ok": all(r["speedup"] >= 1 for r in rows if not r["reference_estimated"])},
    }
    for case in ("causal", "sliding_window_256"):
        ratios = linear(case)
        out[f"{case}_memory_linear"] = {"peak_growth_per_seq_doubling_over_2x": [round(x, 2) for x in ratios],
                                        "ok": bool(ratios) and all(x <= 1.3 for x in ratios)}
    return out


def table(result: dict) -> str:
    lines = [HEADER] + [_line(r) for r in result["rows"]]
    lines.append("")
    lines.append("~ = reference extrapolated from 4096 (x4 time and memory; not run at 8192: ~6 GiB of scores)")
    for name, g in result["goals"].items():
        lines.append(f"goal {name}: {'met' if g['ok'] else 'NOT met'}  {({k: v for k, v in g.items() if k != 'ok'})}")
    m = result["machine"]
    lines.append(f"machine: torch {m['torch']}, {m['cpus']} CPUs, {m['torch_threads']} threads, load {m['load_avg_1m']:.1f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default=LENGTHS)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    ap.add_argument("--out", type=Path, default=RESULTS / "attention.json")
    ap.add_argument("--documents", action="store_true", help="the document-mask cases (bench/attention_documents.py)")
    ap.add_argument("--doc-lengths", default="128,512,2048", help="--documents: tokens per document")
    ap.add_argument("--no-flex", action="store_true", help="--documents: skip compiled Flex (30-70 s of compile a shape)")
    args = ap.parse_args()
    if args.documents:
        return _documents(args)
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    warnings.filterwarnings("ignore")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(HEADER, flush=True)
        result = run([int(x) for x in args.lengths.split(",")], args.runs, Path(tmp), args.cases.split(","))
    text = table(result)
    print("\n".join(text.splitlines()[len(result["rows"]) + 1:]))
    write("attention", result, args.out)
    args.out.with_suffix(".txt").write_text(text + "\n")


def _documents(args: argparse.Namespace) -> None:
    """The document-mask table (lengths default to 2048,4096,8192 here)."""
    import tempfile

    import attention_documents as docs

    warnings.filterwarnings("ignore")
    lengths = "2048,4096,8192" if args.lengths == LENGTHS else args.lengths
    out = args.out if args.out != RESULTS / "attention.json" else RESULTS / "attention_documents.json"
    with tempfile.TemporaryDirectory() as tmp:
        result = docs.run([int(x) for x in args.doc_lengths.split(",")], [int(x) for x in lengths.split(",")],
                          args.runs, Path(tmp), flex=not args.no_flex)
    text = docs.table(result)
    print("\n".join(text.splitlines()[len(result["rows"]) + 1:]))
    write("attention_documents", result, out)
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
