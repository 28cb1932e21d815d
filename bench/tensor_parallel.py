"""Tensor parallelism (train.distributed: {tp, dp}) on gloo CPU processes vs one process, side by side.

Trains specs/llama_style.yaml at small sizes (GQA attention with RoPE, SwiGLU, untied head; vocab 68 for the
bundled text) for ``--steps`` steps of a global batch of 8 with AdamW and gradient clipping, as

* ``one``: one process;
* ``fsdp dp2``: 2 processes, data parallel with FSDP2 (the control: how far float32 rounding of the
  all-reduced sums alone takes the curve from ``one``);
* ``tp2``: 2 processes, tensor parallel (each attention's heads, each FFN's hidden features and the
  vocabulary split over the 2);
* ``tp2 x dp2``: 4 processes, a 2 × 2 mesh: tensor parallel inside each pair, FSDP2 over the pairs.

Per configuration: the largest difference of the logged loss curve and of the final weights from ``one``
(goal: the curve within 1e-5), the parameters one rank holds (from the plan :func:`tp_plan` derives: a split
weight counts 1/tp, FSDP divides by dp) and the wall time of the whole launch (process start included: on 2
shared cores, a measure of overhead, not of speed). Writes a table and bench/results/tensor_parallel.json.

``--dtype float64`` trains every run in float64 (torch's default dtype set in each process, workers included,
by a ``sitecustomize`` on PYTHONPATH; the loss is computed in the model's dtype): differences then measure the
maths of the split, not float32 rounding (writes tensor_parallel_float64.json).

    .venv/bin/python bench/tensor_parallel.py [--steps 20] [--d-model 64] [--layers 2] [--dtype float64]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "llama_style.yaml"
CONFIG = """\
train:
  task: language_model
  data: {builtin: text, seq_len: 16}
  optimizer: {type: adamw, lr: 1.0e-2}
  grad_clip: 1.0
  checkpoint: {every: 1000}
  eval: {every: 1000, batches: 1}
  log: {every: 1, tensorboard: false, plot: false, progress: false}
"""
#: name -> (processes, extra --set overrides)
RUNS = {"one": (1, ["train.batch_size=8"]),
        "fsdp dp2": (2, ["train.batch_size=4", "train.distributed.strategy=fsdp"]),
        "tp2": (2, ["train.batch_size=8", "train.distributed.tp=2"]),
        "tp2 x dp2": (4, ["train.batch_size=4", "train.distributed.tp=2", "train.distributed.dp=2"])}


#: imported by every Python process started with its folder on PYTHONPATH: torch's default dtype from the environment
SITECUSTOMIZE = """\
import os
if os.environ.get("NNG_BENCH_DTYPE"):
    import torch
    torch.set_default_dtype(getattr(torch, os.environ["NNG_BENCH_DTYPE"]))
"""


def _train(out: Path, cfg: Path, nproc: int, sets: list[str], steps: int, env: dict[str, str]) -> float:
    """One ``nngraph train`` launch (with ``env`` added to the environment); its wall time in seconds."""
    args = [sys.executable, "-m", "nngraph", "train", str(SPEC), "--config", str(cfg), "--out", str(out), "-q",
            "--steps", str(steps), "--nproc-per-node", str(nproc)]
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    return time.perf_counter() - t0


def _curve(out: Path) -> list[float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["split"] == "train"]


def _per_rank(vars_: list[str], tp: int, dp: int) -> int:
    """Parameters one rank holds: a weight the plan splits counts 1/tp; FSDP over dp divides each by dp."""
    from nngraph.compilers.torch import build_module
    from nngraph.compilers.train.tensor_parallel import tp_plan
    from nngraph.spec import load_spec

    graph = load_spec(SPEC, vars_)
    model = build_module(graph, seed=0)
    split = set(tp_plan(graph, model, tp).styles) if tp > 1 else set()
    total = 0
    for name, p in model.named_parameters():
        n = p.numel() // tp if name.rpartition(".")[0] in split else p.numel()
        total += math.ceil(n / dp)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    a = ap.parse_args()
    vars_ = ["vocab=68", f"d_model={a.d_model}", "heads=4", "kv_heads=2", f"layers={a.layers}",
             f"ffn={2 * a.d_model}"]
    import torch
    from safetensors.torch import load_file

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "train.yaml"
        cfg.write_text(CONFIG)
        env = {}
        if a.dtype != "float32":
            (Path(tmp) / "sitecustomize.py").write_text(SITECUSTOMIZE)
            env = {"NNG_BENCH_DTYPE": a.dtype,
                   "PYTHONPATH": os.pathsep.join(filter(None, [tmp, os.environ.get("PYTHONPATH")]))}
        for name, (nproc, sets) in RUNS.items():
            out = Path(tmp) / name.replace(" ", "")
            wall = _train(out, cfg, nproc, vars_ + sets, a.steps, env)
            tp = 2 if "tp2" in name else 1
            w = load_file(str(out / "model.safetensors"))
            assert {v.dtype for v in w.values()} == {getattr(torch, a.dtype)}, f"{name}: not trained in {a.dtype}"
            rows.append({"run": name, "processes": nproc, "wall_s": round(wall, 1), "curve": _curve(out),
                         "weights": w,
                         "params_per_rank": _per_rank(vars_, tp, nproc // tp)})
            print(f"{name}: {wall:.1f} s", flush=True)
    ref = rows[0]
    print(f"{a.dtype}, {a.steps} steps, d_model {a.d_model}")
    print(f"{'run':<10} {'procs':>5} {'max |dloss|':>12} {'max |dw|':>10} {'params/rank':>12} {'wall s':>7}")
    for r in rows:
        r["max_dloss"] = max(abs(x - y) for x, y in zip(r["curve"], ref["curve"]))
        r["max_dweight"] = max(float((r["weights"][k] - ref["weights"][k]).abs().max()) for k in ref["weights"])
        print(f"{r['run']:<10} {r['processes']:>5} {r['max_dloss']:>12.2e} {r['max_dweight']:>10.2e} "
              f"{r['params_per_rank']:>12,} {r['wall_s']:>7.1f}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    keep = [{k: v for k, v in r.items() if k != "weights"} for r in rows]
    name = "tensor_parallel.json" if a.dtype == "float32" else f"tensor_parallel_{a.dtype}.json"
    (results / name).write_text(json.dumps({"steps": a.steps, "vars": vars_, "dtype": a.dtype, "runs": keep},
                                           indent=2) + "\n")
    print(f"wrote {results / name}  (load: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
