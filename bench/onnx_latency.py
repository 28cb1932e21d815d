"""Batch-1 inference latency of ONNX exports: fused attention kernels vs decomposed vs ORT's transformers.optimizer vs torch.

Models (``--layers`` layers of the real per-layer shapes; the default keeps the run short on a
2-core machine, ``--full`` uses the specs' own depth and vocabulary):

* GPT-2-shaped: specs/gpt2_small.yaml (d 768, 12 heads of 64, fused qkv, causal, learned positions),
  ``--set layers=L vocab=V ctx=2048``;
* BERT-shaped: specs/bert_encoder.yaml (d 768, 12 heads, key-padding mask from ``lengths``, post-LN),
  ``--set layers=L vocab=V max_len=2048``; the inputs pad nothing (lengths = seq).

Variants, each timed at seq 128, 512 and 2048 (batch 1) from ONE file with a dynamic sequence:

* ``torch``: the compiled spec in eager mode (the decomposed reference attention), no_grad;
* ``nngraph:decomposed``: nngraph export with the decomposed kernel (MatMul/Softmax), no fusions;
* ``nngraph:<kernel>``: nngraph export forcing each fused attention kernel that applies
  (GroupQueryAttention, MultiHeadAttention, the opset-23 Attention op) with the ort-cpu default
  fusions (BiasGelu only) -- exactly what ``nngraph export`` writes for that kernel (which kernel it
  picks: GroupQueryAttention for causal decoders; for encoders ``--expected-seq`` below 512 picks
  Attention, otherwise MultiHeadAttention);
* ``nngraph:<kernel>+all-fusions``: plus compilers/onnx/fusions' SkipLayerNormalization (projection
  bias folded in) and the MultiHeadAttention bias input -- what ORT's optimizer does, slower on ORT CPU
  (why they are not the CPU default);
* ``nngraph:ort-mha+packed_qkv``: the opt-in packed-QKV fusion (MultiHeadAttention and its three
  projections -> ``com.microsoft.Attention`` with one [D, 3D] weight, as ORT's optimizer does);
* ``hf-legacy+optimizer``: the Hugging Face model of the same shape (BERT: BertForMaskedLM, with the
  MLM head like the spec) exported with the TorchScript exporter (opset 17) and run through
  ``onnxruntime.transformers.optimizer`` -- the path where ORT's optimizer fuses attention
  (its GPT-2 no longer exports with the TorchScript exporter: the error is recorded).

Every ORT variant uses ORT's default graph optimizations (ORT_ENABLE_ALL), ``--threads`` intra-op
threads (default 2) and no spinning. Timing: bench/_timing.py ``alternate`` -- each round runs every
variant once in turn (a busy machine's drift hits all alike), median and minimum wall time over
the rounds after one warm-up, median process CPU time, the 1-minute load average before and after
each length, and the RATIOS torch/variant (speed-up over eager) and variant/hf-optimizer (< 1:
faster than ORT's optimizer). On a shared machine trust the ratios, not the milliseconds. Each
exported file's parity with torch (max abs diff, verified at export) is in the JSON.

Usage:  .venv/bin/python bench/onnx_latency.py [--seqs 128,512,2048] [--layers 2] [--vocab 1024] [--runs 5]
                                               [--long-runs N] [--only gpt2|bert] [--full] [--threads 2]
Writes bench/results/onnx_latency.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._timing import alternate  # noqa: E402
from nngraph.compilers.onnx.export import export_graph, plan  # noqa: E402
from nngraph.compilers.onnx.runner import make_session  # noqa: E402
from nngraph.compilers.torch import build_module  # noqa: E402
from nngraph import load_spec  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "onnx_latency.json"
MODELS = {
    "gpt2": {"spec": "specs/gpt2_small.yaml", "model_type": "gpt2", "set": ["ctx=2048"]},
    "bert": {"spec": "specs/bert_encoder.yaml", "model_type": "bert", "set": ["max_len=2048"]},
}


def _session(path_or_bytes: Any, threads: int) -> Any:
    # several sessions take turns in one process: spinning idle threads of one would steal the CPU of the next
    return make_session(path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes), "ort-cpu",
                        threads, opt_level="all", spin=False)


def _optimize(path: Path, model_type: str, out: Path) -> dict[str, int]:
    from onnxruntime.transformers import optimizer

    logging.disable(logging.WARNING)
    model = optimizer.optimize_model(str(path), model_type=model_type, num_heads=12, hidden_size=768, use_gpu=False)
    model.save_model_to_file(str(out))
    return {k: v for k, v in model.get_fused_operator_statistics().items() if v}


def _hf_legacy(name: str, layers: int, vocab: int, folder: Path) -> tuple[Path | None, dict, str | None]:
    """transformers' model of the same shape, TorchScript-exported and optimized (None + the error if it fails)."""
    try:
        import transformers
    except ImportError as exc:
        return None, {}, f"transformers not installed: {exc}"
    path = folder / f"hf-{name}.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name == "bert":
                cfg = transformers.BertConfig(num_hidden_layers=layers, vocab_size=vocab, max_position_embeddings=2048,
                                              attn_implementation="eager")
                # with the MLM head, as specs/bert_encoder.yaml (dense + GELU + LN + tied decoder): the same work
                model = transformers.BertForMaskedLM(cfg).eval()

                class Wrap(torch.nn.Module):
                    def __init__(self, m):
                        super().__init__()
                        self.m = m

                    def forward(self, ids, types, mask):
                        out = self.m(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
                        return out.hidden_states[-1], out.logits

                ids = torch.ones(1, 16, dtype=torch.int64)
                torch.onnx.export(Wrap(model), (ids, ids * 0, ids), str(path), input_names=["ids", "types", "mask"],
                                  dynamic_axes={n: {0: "b", 1: "s"} for n in ("ids", "types", "mask")},
                                  opset_version=17, dynamo=False)
            else:
                cfg = transformers.GPT2Config(n_layer=layers, vocab_size=vocab, n_positions=2048,
                                              attn_implementation="eager", use_cache=False)
                model = transformers.GPT2LMHeadModel(cfg).eval()

                class WrapG(torch.nn.Module):
                    def __init__(self, m):
                        super().__init__()
                        self.m = m

                    def forward(self, ids):
                        return self.m(input_ids=ids, use_cache=False).logits

                torch.onnx.export(WrapG(model), (torch.ones(1, 16, dtype=torch.int64),), str(path),
                                  input_names=["ids"], dynamic_axes={"ids": {0: "b", 1: "s"}}, opset_version=17,
                                  dynamo=False)
        out = folder / f"hf-{name}-opt.onnx"
        fused = _optimize(path, MODELS[name]["model_type"], out)
        return out, fused, None
    except Exception as exc:  # noqa: BLE001 - recorded in the results
        return None, {}, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def bench_model(name: str, seqs: list[int], layers: int | None, vocab: int | None, runs: int, threads: int,
                folder: Path, long_runs: int | None = None) -> dict[str, Any]:
    cfg = MODELS[name]
    overrides = list(cfg["set"]) + ([f"layers={layers}"] if layers else []) + ([f"vocab={vocab}"] if vocab else [])
    graph = load_spec(ROOT / cfg["spec"], overrides)
    module = build_module(graph, seed=0).eval()
    choices = plan(graph, "ort-cpu")
    first = next(iter(choices.values()))
    applicable = [k for k, reason in first.verdicts if reason is None and k != "decomposed"]
    default = first.kernel.name
    files: dict[str, Path] = {}
    fused: dict[str, dict[str, int]] = {}
    notes: dict[str, str] = {}
    parity: dict[str, float] = {}
    # unfused: each attention kernel alone; +fusions: the same file after compilers/onnx/fusions (the default export)
    every = ["skip_layer_norm", "bias_gelu", "mha_bias"]
    variants = [("decomposed", False, ""), *[(k, None, "") for k in applicable],
                *[(k, every, "+all-fusions") for k in applicable]]
    if "ort-mha" in applicable:
        variants.append(("ort-mha", ["bias_gelu", "packed_qkv"], "+packed_qkv"))
    for kernel, fuse, suffix in variants:
        key = f"nngraph:{kernel}{suffix}"
        path = folder / f"{name}-{kernel}{suffix.replace('+', '-')}.onnx"
        res = export_graph(graph, path, module=module, kernels={"*": kernel}, verify=True, fuse=fuse)
        files[key] = path
        fused[key] = {**res.fused_ops, **{f"fusion:{k}": v for k, v in res.fusions.items()}}
        parity[key] = res.verification.max_diff
    hf, hf_fused, hf_error = _hf_legacy(name, layers or graph_layers(graph), vocab or 30522, folder)
    if hf is not None:
        files["hf-legacy+optimizer"] = hf
        fused["hf-legacy+optimizer"] = hf_fused
    else:
        notes["hf-legacy+optimizer"] = hf_error or "failed"
    sessions = {k: _session(p, threads) for k, p in files.items()}
    torch.set_num_threads(threads)
    rows = []
    rng = np.random.default_rng(0)
    hf_vocab = vocab or 30522
    for seq in seqs:
        tokens = rng.integers(0, min(hf_vocab, graph.nodes[next(iter(graph.nodes))].params["num"]), (1, seq))
        feeds = {"tokens": tokens}
        if name == "bert":
            feeds.update(token_types=np.zeros_like(tokens), lengths=np.array([seq]))
        calls: dict[str, Callable[[], Any]] = {}
        tin = {k: torch.from_numpy(v) for k, v in feeds.items()}

        def run_torch(tin=tin):
            with torch.no_grad():
                return module(**tin)

        calls["torch"] = run_torch
        for k, s in sessions.items():
            if k.startswith("hf-"):
                hf_feeds = {"ids": tokens} if name == "gpt2" else {"ids": tokens, "types": np.zeros_like(tokens),
                                                                  "mask": np.ones_like(tokens)}
                calls[k] = lambda s=s, f=hf_feeds: s.run(None, f)
            else:
                calls[k] = lambda s=s, f=feeds: s.run(None, f)
        load_before = os.getloadavg()[0]
        n = runs if long_runs is None or seq < 1024 else long_runs
        stats = alternate(calls, n)
        load_after = os.getloadavg()[0]
        t_torch = stats["torch"]["wall_median_s"]
        t_hf = stats.get("hf-legacy+optimizer", {}).get("wall_median_s")
        for k, v in stats.items():
            med = v["wall_median_s"]
            rows.append({"model": name, "seq": seq, "variant": k, "ms_median": med * 1e3, "ms_min": v["wall_min_s"] * 1e3,
                         "cpu_ms_median": v["cpu_median_s"] * 1e3, "runs": v["runs"], "vs_torch": med / t_torch,
                         "torch_speedup": t_torch / med, "vs_hf_optimizer": med / t_hf if t_hf else None,
                         "load_1m": [load_before, load_after], "fused_ops": fused.get(k, {}),
                         "parity_max_abs_diff": parity.get(k)})
        print(f"  {name} seq {seq} (load {load_before:.1f}->{load_after:.1f}): " +
              ", ".join(f"{r['variant']} {r['ms_median']:.1f} ms" for r in rows
                        if r["seq"] == seq and r["model"] == name), flush=True)
    return {"model": name, "spec": cfg["spec"], "overrides": overrides, "default_kernel": default,
            "kernels": applicable, "rows": rows, "notes": notes}


def graph_layers(graph: Any) -> int:
    return sum(1 for n in graph.nodes.values() if n.op == "attention")


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'model':6} {'seq':>5}  {'variant':30} {'ms median':>10} {'min':>9} {'cpu ms':>9} {'torch/x':>8} "
             f"{'x/hf-opt':>8}  fused ops", "-" * 120]
    for res in results:
        for r in res["rows"]:
            ops = ", ".join(f"{k.replace('com.microsoft.', '')} {v}" for k, v in r["fused_ops"].items()
                            if not k.startswith("fusion:")) or "-"
            hf = f"{r['vs_hf_optimizer']:8.3f}" if r.get("vs_hf_optimizer") else f"{'-':>8}"
            lines.append(f"{r['model']:6} {r['seq']:>5}  {r['variant']:30} {r['ms_median']:10.1f} {r['ms_min']:9.1f} "
                         f"{r['cpu_ms_median']:9.1f} {r['torch_speedup']:8.2f} {hf}  {ops}")
        for k, why in res["notes"].items():
            lines.append(f"{res['model']:6}        {k}: not run ({why})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seqs", default="128,512,2048")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--long-runs", type=int, default=None, help="rounds at seq >= 1024 (default: --runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=sorted(MODELS))
    ap.add_argument("--full", action="store_true", help="the specs' own depth and vocabulary (slow)")
    args = ap.parse_args()
    import onnxruntime as ort

    seqs = [int(s) for s in args.seqs.split(",")]
    layers, vocab = (None, None) if args.full else (args.layers, args.vocab)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ([args.only] if args.only else list(MODELS)):
            results.append(bench_model(name, seqs, layers, vocab, args.runs, args.threads, Path(tmp), args.long_runs))
    print(table(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {"bench": "onnx_latency", "batch": 1, "seqs": seqs, "layers": layers or "spec", "vocab": vocab or "spec",
               "runs": args.runs, "threads": args.threads, "torch": torch.__version__, "onnxruntime": ort.__version__,
               "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
               "load_avg_end": os.getloadavg(), "results": results}
    RESULTS.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
