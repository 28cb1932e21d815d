"""Scaling bench (CPU): activation memory with/without per-block checkpointing, measured and planned per-rank
memory under FSDP, and train.compile's step time.

1. Activation memory: bytes autograd keeps for backward (``saved_tensors_hooks``) in one training forward of a
   12-block decoder (d=256, 4 heads, seq 128, batch 8), plain vs ``activation_checkpointing`` on every block.
2. Memory plan per rank from the meta device (no allocation): parameters + gradients + AdamW state (16 bytes per
   fp32 parameter) sharded over N ranks, plus what FSDP holds unsharded at once: the whole model's parameters and
   gradients (one unit, the old behaviour) vs the root's and the largest other unit's parameters and one unit's
   gradients before their reduce-scatter (per-block units: each block copy, and each large top-level layer --
   an untied embedding or head, or a tied table with its head ``self.wte.attend(x)`` -- its own unit,
   ``compilers/train/fsdp.own_units``). For the 12-block decoder, GLaM and GShard. A plan from the meta device, checked against 3. (it
   predicts the measured rows exactly).
3. Measured per-rank memory of two 12-block decoders (vocab 2048, so the blocks hold most weights): GPT-2's
   layout (the head tied to wte: the table one unit, gathered around the lookup and around the head) and
   LLaMA's (untied embedding and head, each its own unit), on 1/2/4 gloo ranks, whole-model vs per-block FSDP
   (bench/_fsdp_memory.py: local shards of parameters, gradients and AdamW state, plus the peak of the
   all-gathered parameters and unsharded gradients during a step), against the plan and the goal: per-block <=
   (one process's P+G+O) / N + one block's gathered weights, + 10%.
4. Step time of gpt_char at its training size (batch 32 x 64 tokens, one torch thread): the trainer's own step
   (``Trainer.train_step``: forward, loss, backward, clipping, AdamW), eager vs ``train.compile`` (inductor, each
   block class compiled once), medians of alternating steps, split into phases (bench/_train_step.py) to show
   where the time goes; the compile time apart.

Writes bench/results/scale.json. Run: .venv/bin/python bench/scale.py  (about 5 minutes on 2 idle cores);
``--memory-only``: items 2 and 3 alone (writes scale_memory.json); ``--compile-only``: item 4 alone (about a minute;
the other parts of scale.json are kept).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import RESULTS, ROOT  # noqa: E402

from nngraph.commands import limits  # noqa: E402
from nngraph.compilers.torch import build_module  # noqa: E402
from nngraph.compilers.torch.codegen import _SkipMetaInit  # noqa: E402
from nngraph.compilers.torch.module import blocks  # noqa: E402
from nngraph.compilers.train.fsdp import own_units  # noqa: E402
from nngraph.spec import load_spec  # noqa: E402

DECODER = ["layers=12", "d_model=256", "heads=4", "ctx=128"]
MEASURED = [*DECODER, "vocab=2048"]  # the measured decoder: GPT-2's 50k vocabulary would outweigh the 12 blocks
#: the measured decoders: name -> (spec under specs/, vars)
DECODERS = {"tied (gpt2_small)": ("gpt2_small.yaml", MEASURED),
            "untied (llama_style)": ("llama_style.yaml", ["layers=12", "d_model=256", "heads=4", "kv_heads=4",
                                                          "ffn=1024", "vocab=2048"])}


def saved_bytes(model: torch.nn.Module, tokens: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves in one forward (distinct storages counted once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(tokens)
    (out if isinstance(out, torch.Tensor) else next(iter(out.values()))).float().mean().backward()
    return sum(seen.values())


def activation_memory() -> dict:
    graph = load_spec(ROOT / "specs" / "gpt2_small.yaml", DECODER)
    tokens = torch.randint(0, 100, (8, 128))
    plain = build_module(graph, seed=0).train()
    ckpt = build_module(graph, seed=0).train()
    for b in blocks(ckpt):
        b.nng_checkpoint = True
    a, c = saved_bytes(plain, tokens), saved_bytes(ckpt, tokens)
    return {"blocks": len(blocks(ckpt)), "plain_MiB": a / 2**20, "checkpointed_MiB": c / 2**20, "ratio": c / a}


def plan(spec: Path, sets: list[str], ranks: list[int]) -> dict:
    graph = load_spec(spec, sets, limits(max_memory_gb=1e6))
    with torch.device("meta"), _SkipMetaInit():
        model = build_module(graph, seed=0)
    total = sum(p.numel() for p in model.parameters())
    per_block = [sum(p.numel() for p in b.parameters()) for b in blocks(model)]
    units = {name: sum(p.numel() for p in u.parameters()) for name, u in own_units(model).items()}
    root = total - sum(units.values())
    largest = max(units.values(), default=0)  # a block copy, or a large embedding or head
    rows = []
    for n in ranks:
        shard = 16 * total / n
        rows.append({"ranks": n, "whole_model_GB": (shard + 4 * total + 4 * total) / 1e9,
                     "per_block_GB": (shard + 4 * (root + largest) + 4 * max(root, largest)) / 1e9})
    return {"params": total, "blocks": len(per_block), "largest_block": max(per_block, default=0), "root": root,
            "top_level_units": sorted(set(units) - {b.nng_prefix for b in blocks(model)}), "rows": rows}


def measured_memory(spec: str, sets: list[str], ranks: list[int]) -> list[dict]:
    """bench/_fsdp_memory.py on each rank count and mode (one process: the plain module); rank 0's rows."""
    import tempfile

    import torch.multiprocessing as mp

    from _fsdp_memory import measure
    from nngraph.compilers.ports import free_port

    rows = []
    for n in ranks:
        for mode in (["whole", "per_block"] if n > 1 else ["one process"]):
            with tempfile.TemporaryDirectory() as tmp:
                out = str(Path(tmp) / "rank0.json")
                mp.spawn(measure, args=(n, free_port(), mode, spec, sets, out), nprocs=n, join=True)
                rows.append(json.loads(Path(out).read_text()))
    return rows


def check_memory(rows: list[dict], plan_rows: list[dict], block_params: int) -> None:
    """Adds to each row: its total (P+G+O shards + peak gathered), the plan's figure, the goal and whether met."""
    one = next(r for r in rows if r["ranks"] == 1)
    base = one["params"] + one["grads"] + one["optim"]
    for r in rows:
        r["total"] = r["params"] + r["grads"] + r["optim"] + r["gathered"]
        planned = next(p for p in plan_rows if p["ranks"] == r["ranks"])
        r["plan"] = 1e9 * (planned["whole_model_GB"] if r["mode"] == "whole" else planned["per_block_GB"])
        if r["ranks"] == 1:
            r["plan"] = 16 * r["params_total"]  # no FSDP: nothing gathered
        r["goal"] = 1.1 * (base / r["ranks"] + 4 * block_params)
        r["meets_goal"] = r["total"] <= r["goal"]


def compile_speed(runs: int = 21) -> dict:
    """gpt_char's training step (``Trainer.train_step``: batch 32 x 64, AdamW, clipping; one thread), eager vs
    ``train.compile`` (inductor with its C++ wrapper) and ``train.compile`` with inductor's Python wrapper (as
    before), side by side: medians of alternating steps, with the phases of bench/_train_step.py; the first two
    steps' time (compilation) apart."""
    from _train_step import compare

    on = ["train.compile=true"]
    res = compare(ROOT / "specs" / "gpt_char.yaml", {"eager": ([], None), "compiled": (on, None),
                                                      "compiled_py_wrapper": (on, {"cpp_wrapper": False})}, runs)
    e, c, p = res["eager"], res["compiled"], res["compiled_py_wrapper"]
    return {**res, "speedup": e["wall"] / c["wall"], "speedup_cpu": e["cpu"] / c["cpu"],
            "speedup_py_wrapper_cpu": e["cpu"] / p["cpu"], "runs": runs, "threads": 1}


def print_speed(speed: dict) -> None:
    from _train_step import PHASES

    print("\ngpt_char train step (Trainer.train_step: batch 32 x 64, AdamW, clip; 1 thread), medians, ms: wall clock in "
          "the wall column, CPU time in the others")
    print(f"{'':19} {'wall':>7} {'CPU':>7} " + " ".join(f"{p:>9}" for p in PHASES) + f" {'GEMM':>7} {'CPU-GEMM':>8}"
          f" {'first 2 steps':>13}")
    for name in ("eager", "compiled", "compiled_py_wrapper"):
        r = speed[name]
        cols = " ".join(f"{r[p] * 1e3:9.2f}" for p in PHASES)
        print(f"{name:19} {r['wall'] * 1e3:7.2f} {r['cpu'] * 1e3:7.2f} {cols}"
              + f" {r['gemm'] * 1e3:7.2f} {(r['cpu'] - r['gemm']) * 1e3:8.2f} {r['first_steps_s']:12.1f}s")
    e, c = speed["eager"], speed["compiled"]
    by_phase = ", ".join(f"{p} {e[p] / c[p]:.2f}x" for p in PHASES if c[p] > 0)
    rest = (e["cpu"] - e["gemm"]) / (c["cpu"] - c["gemm"])
    print(f"compiled / eager: {speed['speedup']:.2f}x wall, {speed['speedup_cpu']:.2f}x CPU; by phase {by_phase}; "
          f"the rest (CPU less GEMM) {rest:.2f}x")
    print(f"compiled with the Python wrapper / eager: {speed['speedup_py_wrapper_cpu']:.2f}x CPU")


def print_plans(plans: dict) -> None:
    print(f"{'model':10} {'params':>15} {'ranks':>5} {'whole-model FSDP GB/rank':>25} {'per-block FSDP GB/rank':>23}")
    for name, p in plans.items():
        for r in p["rows"]:
            print(f"{name:10} {p['params']:>15,} {r['ranks']:>5} {r['whole_model_GB']:>25.3f} {r['per_block_GB']:>23.3f}")


def print_measured(name: str, rows: list[dict], measured_plan: dict) -> None:
    mib = 2**20
    print(f"\n12-block decoder, {name}: {measured_plan['params']:,} parameters; one block "
          f"{measured_plan['largest_block']:,}; units of their own besides the blocks: "
          f"{', '.join(measured_plan['top_level_units']) or 'none'}; the root {measured_plan['root']:,}; MiB")
    print(f"{'ranks':>5} {'FSDP':>11} {'params':>7} {'grads':>7} {'optim':>7} {'gath.W':>7} {'gath.dW':>7} "
          f"{'total':>7} {'plan':>7} {'goal':>7} {'met':>4} {'step peak':>9}")
    for r in rows:
        cols = [r[k] / mib for k in ("params", "grads", "optim", "gathered_params", "gathered_grads", "total", "plan",
                                     "goal")]
        print(f"{r['ranks']:>5} {r['mode']:>11} " + " ".join(f"{c:>7.2f}" for c in cols)
              + f" {'yes' if r['meets_goal'] else 'no':>4} {r['step_peak'] / mib:>9.2f}")


def memory(plans: dict) -> dict:
    """Items 2 and 3: the plans printed, then each measured decoder's rows against its plan and the goal."""
    print_plans(plans)
    print("\nmeasured per rank: local shards of parameters, gradients, AdamW state; peak all-gathered weights (gath.W) "
          "and unsharded gradients (gath.dW); plan: item 2's formula; goal: (one process)/N + one block + 10%")
    measured = {}
    for name, (spec, sets) in DECODERS.items():
        measured_plan = plan(ROOT / "specs" / spec, sets, [1, 2, 4])
        rows = measured_memory(spec, sets, [1, 2, 4])
        check_memory(rows, measured_plan["rows"], measured_plan["largest_block"])
        print_measured(name, rows, measured_plan)
        measured[name] = {"spec": spec, "vars": sets, "plan": measured_plan, "rows": rows}
    return measured


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--memory-only", action="store_true", help="the memory plans and measured rows (items 2, 3) only")
    only.add_argument("--compile-only", action="store_true", help="train.compile vs eager (item 4) only; keeps the rest")
    a = ap.parse_args()
    load = os.getloadavg()
    result = {}
    if not a.compile_only:
        act = None if a.memory_only else activation_memory()
        if act:
            print(f"activation memory, {act['blocks']}-block decoder: plain {act['plain_MiB']:.1f} MiB, checkpointed "
                  f"{act['checkpointed_MiB']:.1f} MiB (ratio {act['ratio']:.3f})")
        plans = {"decoder12": plan(ROOT / "specs" / "gpt2_small.yaml", DECODER, [1, 2, 4]),
                 "glam": plan(ROOT / "specs" / "seeds" / "glam.yaml", [], [8, 64, 512]),
                 "gshard": plan(ROOT / "specs" / "seeds" / "gshard.yaml", [], [8, 64, 512])}
        result = {"activation": act, "plans": plans, "measured": memory(plans)}
    speed = None if a.memory_only else compile_speed()
    if speed:
        print_speed(speed)
    end = os.getloadavg()
    print(f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("scale_memory.json" if a.memory_only else "scale.json")
    if a.compile_only and path.exists():  # keep the memory parts of the last full run
        result = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("compile", "compile_load_avg")}
    else:
        result["load_avg_start"], result["load_avg_end"] = load, end
    path.write_text(json.dumps({**result, "compile": speed, "compile_load_avg": [load, end]}, indent=1))


if __name__ == "__main__":
    main()
