"""Scaling bench (CPU): activation memory with/without per-block checkpointing, and per-rank memory plans.

1. Activation memory: bytes autograd keeps for backward (``saved_tensors_hooks``) in one training forward of a
   12-block decoder (d=256, 4 heads, seq 128, batch 8), plain vs ``activation_checkpointing`` on every block.
2. Memory plan per rank from the meta device (no allocation): parameters + gradients + AdamW state (16 bytes per
   fp32 parameter) sharded over N ranks, plus what FSDP gathers at once: the whole model (one unit, the old
   behaviour) vs the root plus the largest block copy (per-block units). For the 12-block decoder, GLaM and GShard.
   A plan, not a measurement of N processes.

Writes bench/results/scale.json. Run: .venv/bin/python bench/scale.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import RESULTS, ROOT  # noqa: E402

from nngraph.commands import limits  # noqa: E402
from nngraph.compilers.torch import build_module  # noqa: E402
from nngraph.compilers.torch.codegen import _SkipMetaInit  # noqa: E402
from nngraph.compilers.torch.module import blocks  # noqa: E402
from nngraph.spec import load_spec  # noqa: E402

DECODER = ["layers=12", "d_model=256", "heads=4", "ctx=128"]


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
    root = total - sum(per_block)
    rows = []
    for n in ranks:
        shard = 16 * total / n
        rows.append({"ranks": n, "whole_model_GB": (shard + 4 * total) / 1e9,
                     "per_block_GB": (shard + 4 * (root + max(per_block, default=0))) / 1e9})
    return {"params": total, "blocks": len(per_block), "largest_block": max(per_block, default=0), "root": root,
            "rows": rows}


def main() -> None:
    act = activation_memory()
    print(f"activation memory, {act['blocks']}-block decoder: plain {act['plain_MiB']:.1f} MiB, checkpointed "
          f"{act['checkpointed_MiB']:.1f} MiB (ratio {act['ratio']:.3f})")
    plans = {"decoder12": plan(ROOT / "specs" / "gpt2_small.yaml", DECODER, [1, 2, 4]),
             "glam": plan(ROOT / "specs" / "seeds" / "glam.yaml", [], [8, 64, 512]),
             "gshard": plan(ROOT / "specs" / "seeds" / "gshard.yaml", [], [8, 64, 512])}
    print(f"{'model':10} {'params':>15} {'ranks':>5} {'whole-model FSDP GB/rank':>25} {'per-block FSDP GB/rank':>23}")
    for name, p in plans.items():
        for r in p["rows"]:
            print(f"{name:10} {p['params']:>15,} {r['ranks']:>5} {r['whole_model_GB']:>25.3f} {r['per_block_GB']:>23.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps({"activation": act, "plans": plans}, indent=1))


if __name__ == "__main__":
    main()
