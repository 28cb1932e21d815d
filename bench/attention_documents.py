"""Document masks (packed sequences) on the CPU: the document kernel vs SDPA + dense mask vs compiled FlexAttention.

    .venv/bin/python bench/attention.py --documents [--doc-lengths 128,512,2048] [--lengths 2048,4096,8192] [--runs 3]
                                                    [--no-flex]   (skip compiled Flex: its compile takes 30-70 s a shape)

What is timed: the attention core of one ``attention`` node with ``mask: {all: [document, causal]}`` (B=1, 8 heads,
head_dim 64, fp32; q, k, v given, output projection the identity, as in bench/attention.py), ``doc_ids`` packing
documents of one length back to back. Each row times, in ONE alternating run (bench/_timing.py ``alternate``):

* ``document``: the block-diagonal kernel (compilers/kernels/document.py), forward and forward+backward;
* ``sdpa_mask``: SDPA with the dense boolean [T, T] mask (the plan's choice before the document kernel),
  forward and forward+backward;
* ``flex``: compiled FlexAttention (forward only: no backward on the CPU), BlockMask rebuilt per call as the
  plan does for a mask reading graph inputs; its first call (compile + BlockMask) is ``flex_first_s``.

* ``causal``: SDPA ``is_causal`` over the whole sequence (torch's own causal kernel; no document mask), forward and
  forward+backward — on a row whose one document fills the sequence the mask *is* causal and this is the best the
  document kernel (one is_causal call there) can do; ``doc/causal`` says how close it comes.

q, k, v are views of [B, T, H, d] leaves, the layout the module's projections give (``split_heads``), so neither
kernel pays for a layout the model never has; gradients flow into those leaves.

The physical cap: every kernel here is exact, so none can skip a visible pair; ``vis`` = visible pairs / T²
(Σ over documents of L(L+1)/2, causal) and ``cap`` = 1 / vis is the most any kernel can gain over SDPA + mask, which
computes all T² pairs (equal cost per pair assumed). ``of cap`` = the measured speed-up / cap.

On a machine busier than its cores (load above the thread count), 2-thread wall times punish kernels made of many
small calls (the query tiles of short documents: every call ends in a thread barrier that waits for a descheduled
thread); ``OMP_NUM_THREADS=1`` then shows each kernel's compute cost without that (``machine`` records the threads).

Times are wall-clock medians (the goals are judged on them); ``cpu t`` repeats the ratios in process CPU time, which
waiting for a core on a shared machine does not inflate. Goals (seq >= 2048): document forward <= 1.0x compiled flex's forward time; document >= 3x faster than SDPA + mask,
forward and forward+backward. Outputs of the three are checked against each other (max abs diff).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _timing import alternate, machine

from nngraph import load_spec
from nngraph.compilers.passes.lowering import decide
from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.ops.attention_kernels import LoweredAttention

H, D = 8, 64
MASK = "{all: [document, causal]}"


def _spec() -> str:
    return (f"nngraph: 1\nname: bench_doc\ninputs:\n  x: {{shape: [batch, seq, {H * D}], dtype: float32}}\n"
            "  doc_ids: {shape: [batch, seq], dtype: int64}\n"
            f"graph:\n  - {{name: attn, op: attention, in: {{x: x, doc_ids: doc_ids}}, heads: {H}, mask: {MASK}}}\n"
            "outputs: [attn]\n")


def _module(ref, cfg, q, k, v):
    low = LoweredAttention.from_reference(copy.deepcopy(ref), {"tiers": [dict(cfg, min_kv=0)]})
    low.keys_values = lambda x, context, *_: (q, k, v, 0)  # type: ignore[method-assign]
    low.out = torch.nn.Identity()
    return low.eval()


def _configs(graph, t):
    node = graph.nodes["attn"]
    inf = {c.kernel: c.config for c in decide(graph, node, "cpu", "inference", kv_len=t).candidates}
    train = {c.kernel: c.config for c in decide(graph, node, "cpu", "training", kv_len=t).candidates}
    return inf, train


def visible_fraction(t: int, doc: int) -> float:
    """Visible pairs / T² of ``{all: [document, causal]}`` with documents of ``doc`` tokens packed into ``t``:
    Σ L(L+1)/2 over the runs (the last one may be shorter)."""
    lengths = [min(doc, t - s) for s in range(0, t, doc)]
    return sum(n * (n + 1) // 2 for n in lengths) / t ** 2


def _row(graph, ref, t, doc, runs, flex=True):
    inf, train = _configs(graph, t)
    ids = (torch.arange(t) // doc).view(1, t)
    leaves = [torch.randn(1, t, H, D, requires_grad=True) for _ in range(3)]
    q, k, v = (leaf.transpose(1, 2) for leaf in leaves)  # [B, H, T, d] views, as split_heads gives them
    x = torch.empty(1, t, H * D)
    mods = {"document": _module(ref, train["document"], q, k, v), "sdpa_mask": _module(ref, train["sdpa"], q, k, v)}
    if flex:  # flex refuses grad-tracking q
        mods["flex"] = _module(ref, inf["flex"], q.detach(), k.detach(), v.detach())

    def fwd(name):
        def call():
            with torch.no_grad():
                return mods[name](x, doc_ids=ids)
        return call

    def fwd_bwd(name):
        def call():
            for leaf in leaves:
                leaf.grad = None
            mods[name](x, doc_ids=ids).sum().backward()
        return call

    def causal(grad):
        def call():
            for leaf in leaves:
                leaf.grad = None
            with torch.set_grad_enabled(grad):
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                if grad:
                    o.sum().backward()
        return call

    t0 = time.perf_counter()
    outs = {"flex": fwd("flex")()} if flex else {}  # its compile + BlockMask
    flex_first = time.perf_counter() - t0 if flex else None
    outs |= {n: fwd(n)() for n in ("document", "sdpa_mask")}
    diff = max((outs["document"] - o).abs().max().item() for n, o in outs.items() if n != "document")
    variants = {n: fwd(n) for n in mods} | {"causal": causal(False), "document_fb": fwd_bwd("document"),
                                           "sdpa_mask_fb": fwd_bwd("sdpa_mask"), "causal_fb": causal(True)}
    timing = alternate(variants, runs)
    kernels = {n: m.last_kernel for n, m in mods.items()}
    assert kernels == {"document": "document", "sdpa_mask": "sdpa", "flex": "flex"} if flex else \
        {"document": "document", "sdpa_mask": "sdpa"}, kernels
    ms = {n: 1000 * s["wall_median_s"] for n, s in timing.items()}
    cpu = {n: s["cpu_median_s"] for n, s in timing.items()}
    vs_flex = (lambda x: x["document"] / x["flex"]) if flex else (lambda x: None)
    vis = visible_fraction(t, doc)
    fwd_x, fb_x = ms["sdpa_mask"] / ms["document"], ms["sdpa_mask_fb"] / ms["document_fb"]
    return {"doc": doc, "seq": t, **{f"{n}_ms": v for n, v in ms.items()}, "flex_first_s": flex_first,
            "max_abs_diff": diff, "vs_flex_fwd": vs_flex(ms),
            "visible_fraction": vis, "max_speedup": 1 / vis,
            "speedup_sdpa_fwd": fwd_x, "speedup_sdpa_fwd_bwd": fb_x,
            "of_cap_fwd": fwd_x * vis, "of_cap_fwd_bwd": fb_x * vis,
            "vs_causal_fwd": ms["document"] / ms["causal"], "vs_causal_fwd_bwd": ms["document_fb"] / ms["causal_fb"],
            "cpu_time": {"vs_flex_fwd": vs_flex(cpu), "speedup_sdpa_fwd": cpu["sdpa_mask"] / cpu["document"],
                         "speedup_sdpa_fwd_bwd": cpu["sdpa_mask_fb"] / cpu["document_fb"]}}


HEADER = (f"{'doc':>5} {'seq':>5} {'vis':>6} {'cap':>6} | {'fwd: doc ms':>11} {'sdpa+mask':>9} {'causal':>7} {'flex':>8} "
          f"{'doc/flex':>8} {'sdpa/doc':>8} {'of cap':>6} {'doc/causal':>10} | {'fwd+bwd: doc':>12} {'sdpa+mask':>9} "
          f"{'causal':>7} {'sdpa/doc':>8} {'of cap':>6} {'doc/causal':>10} | {'cpu t: d/flex':>13} {'sdpa/d':>6} "
          f"{'fb':>5} | {'flex 1st s':>10} {'max diff':>8}")


def _f(x: float | None, width: int, fmt: str) -> str:
    """A number in a column, ``-`` when not measured (--no-flex)."""
    return f"{'-':>{width}}" if x is None else f"{x:>{width}{fmt}}"


def line(r: dict) -> str:
    c = r["cpu_time"]
    return (f"{r['doc']:>5} {r['seq']:>5} {r['visible_fraction']:>6.3f} {r['max_speedup']:>5.1f}x | "
            f"{r['document_ms']:>11.1f} {r['sdpa_mask_ms']:>9.1f} {r['causal_ms']:>7.1f} "
            f"{_f(r.get('flex_ms'), 8, '.1f')} {_f(r['vs_flex_fwd'], 7, '.2f')}x {r['speedup_sdpa_fwd']:>7.1f}x "
            f"{100 * r['of_cap_fwd']:>5.0f}% {r['vs_causal_fwd']:>9.2f}x | "
            f"{r['document_fb_ms']:>12.1f} {r['sdpa_mask_fb_ms']:>9.1f} {r['causal_fb_ms']:>7.1f} "
            f"{r['speedup_sdpa_fwd_bwd']:>7.1f}x {100 * r['of_cap_fwd_bwd']:>5.0f}% {r['vs_causal_fwd_bwd']:>9.2f}x | "
            f"{_f(c['vs_flex_fwd'], 12, '.2f')}x {c['speedup_sdpa_fwd']:>5.1f}x {c['speedup_sdpa_fwd_bwd']:>4.1f}x | "
            f"{_f(r['flex_first_s'], 10, '.2f')} {r['max_abs_diff']:>8.1e}")


def goals(rows: list[dict]) -> dict:
    long = [r for r in rows if r["seq"] >= 2048]
    flexed = [r for r in long if r["vs_flex_fwd"] is not None]
    return {"document_le_flex_fwd": {"ratios": [round(r["vs_flex_fwd"], 2) for r in flexed],
                                     "ok": all(r["vs_flex_fwd"] <= 1.0 for r in flexed) if flexed else None},
            **{f"document_3x_sdpa_{key}": _three_x(long, key) for key in ("fwd", "fwd_bwd")}}


def _three_x(long: list[dict], key: str) -> dict:
    """The 3x goal over every row, with the rows whose physical cap (1 / visible fraction) is under 3x named: no
    exact kernel can meet it there (one document filling the sequence: the mask is causal, cap ~2x)."""
    capped = [f"doc {r['doc']}/seq {r['seq']} cap {r['max_speedup']:.2f}x" for r in long if r["max_speedup"] < 3]
    return {"speedups": [round(r[f"speedup_sdpa_{key}"], 1) for r in long],
            "of_cap": [round(r[f"of_cap_{key}"], 2) for r in long], "capped_below_3x": capped,
            "ok": bool(long) and all(r[f"speedup_sdpa_{key}"] >= 3 for r in long)}


def run(doc_lengths: list[int], lengths: list[int], runs: int, root: Path, flex: bool = True) -> dict:
    torch.manual_seed(0)
    path = root / "documents.yaml"
    path.write_text(_spec())
    graph = load_spec(path)
    ref = build_module(graph, seed=0).attn
    rows = []
    print(HEADER, flush=True)
    for t in lengths:
        for doc in doc_lengths:
            if doc > t:
                continue
            rows.append(_row(graph, ref, t, doc, runs, flex))
            print(line(rows[-1]), flush=True)
    return {"machine": machine(), "config": {"batch": 1, "heads": H, "head_dim": D, "dtype": "float32", "mask": MASK,
                                               "doc_lengths": doc_lengths, "lengths": lengths, "runs": runs,
                                               "flex": flex},
            "rows": rows, "goals": goals(rows)}


def table(result: dict) -> str:
    lines = [HEADER] + [line(r) for r in result["rows"]] + [""]
    for name, g in result["goals"].items():
        verdict = "not measured" if g["ok"] is None else "met" if g["ok"] else "NOT met"
        lines.append(f"goal {name}: {verdict}  {({k: v for k, v in g.items() if k != 'ok'})}")
    m = result["machine"]
    lines.append(f"machine: torch {m['torch']}, {m['cpus']} CPUs, {m['torch_threads']} threads, load {m['load_avg_1m']:.1f}")
    return "\n".join(lines)
