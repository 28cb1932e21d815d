"""Generation throughput: nngraph in torch and in ONNX Runtime (both with the KV cache) against Hugging Face
``generate`` on the same weights, greedy, 128 new tokens.

Models: specs/gpt2_small.yaml at two shapes -- GPT-2 small (d 768, 12 layers, 12 heads, vocab 50257) and
gpt_char's (d 64, 2 layers, 4 heads, vocab 67; ctx 256 so that 128 new tokens fit) -- with the weights of a
randomly initialized ``GPT2LMHeadModel`` of the same config imported (``hf-gpt2``). Batches: 1 row, and 4
rows of different lengths left-padded (the spec then gets a ``key_padding`` and a ``positions`` input,
``--kv-cache`` export; HF gets the attention mask).

Variants, timed in one alternating run (bench/_timing.py ``alternate``: every variant once per round):

* ``hf``: ``GPT2LMHeadModel.generate(max_new_tokens=min_new_tokens=128, do_sample=False)`` (its KV cache);
* ``torch``: :func:`nngraph.compilers.torch.ops.attention_cache.generate` (KV cache) on the model built from
  the spec (the reference attention: the decomposed math);
* ``torch-lowered``: the same on the model lowered for the ``cpu`` target (what ``nngraph compile --target cpu``
  builds: SDPA at every length, without a mask when one token is decoded under a causal mask);
* ``ort``: :func:`nngraph.compilers.onnx.generate.generate` on the ``--kv-cache`` export (ort-cpu; the kernel
  the export picks), ``--threads`` intra-op threads, no spinning.

Reported: tokens/s = rows x 128 / median wall time, the ratio to HF (and of HF's process CPU time to each
variant's: ``cpu_vs_hf``, less sensitive to waiting for a CPU), whether all produced the same tokens, the
1-minute load average before and after. On a shared machine trust the ratios; with more threads than idle
cores, intra-op threads wait for a CPU at every parallel op (``--threads 1`` measures the work). Each variant
is first warmed up with a 2-token generation (untimed), then timed ``--runs`` times.

Usage:  .venv/bin/python bench/generate.py [--runs 3] [--new 128] [--cells gpt2:1,gpt2:4,char:1,char:4]
                                           [--threads 2] [--out F] [--merge]
``--cells`` picks MODEL or MODEL:BATCH cells (default: all four); ``--merge`` keeps the cells of an existing
JSON that this run does not measure (so slow cells can be measured one at a time, e.g. ``--cells gpt2:4
--runs 1 --merge``). Writes bench/results/generate.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._timing import RESULTS, alternate, machine, write  # noqa: E402
from nngraph import load_spec  # noqa: E402
from nngraph.compilers.decoding import left_pad  # noqa: E402
from nngraph.compilers.onnx.export import export_graph  # noqa: E402
from nngraph.compilers.onnx.generate import generate as ort_generate  # noqa: E402
from nngraph.compilers.onnx.runner import make_session  # noqa: E402
from nngraph.compilers.passes import lower  # noqa: E402
from nngraph.compilers.torch.hf_import import import_weights  # noqa: E402
from nngraph.compilers.torch.ops.attention_cache import generate as torch_generate  # noqa: E402

SPEC = ROOT / "specs" / "gpt2_small.yaml"
SHAPES = {"gpt2": {"vocab": 50257, "d_model": 768, "layers": 12, "heads": 12, "ctx": 1024},
          "char": {"vocab": 67, "d_model": 64, "layers": 2, "heads": 4, "ctx": 256}}
PADDED_ROWS = (24, 9, 17, 3)  # prompt lengths of the padded batch; batch 1 takes the first


def padded_spec(folder: Path) -> Path:
    """gpt2_small with ``key_padding`` (every layer's mask) and ``positions`` (the learned table) inputs."""
    text = SPEC.read_text()
    for old, new in (
        ('dtype: int64, doc: "token ids, seq <= ctx"}\n', 'dtype: int64, doc: "token ids, seq <= ctx"}\n'
         "  key_padding: {shape: [batch, seq], dtype: bool}\n  positions: {shape: [batch, seq], dtype: int64}\n"),
        ("    inputs: [x]\n    nodes:\n      - {name: ln_1", "    inputs: [x, key_padding]\n    nodes:\n      - {name: ln_1"),
        ("in: ln_1, heads", "in: {x: ln_1, key_padding: key_padding}, heads"),
        ("mask: causal", "mask: {all: [causal, key_padding]}"),
        ("in: wte, type: learned", "in: {x: wte, positions: positions}, type: learned"),
        ('in: drop}', 'in: {x: drop, key_padding: key_padding}}')):
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "gpt2_padded.yaml"
    path.write_text(text)
    return path


def hf_model(shape: dict[str, int]) -> Any:
    import transformers

    cfg = transformers.GPT2Config(vocab_size=shape["vocab"], n_positions=shape["ctx"], n_embd=shape["d_model"],
                                  n_layer=shape["layers"], n_head=shape["heads"], resid_pdrop=0.0, embd_pdrop=0.0,
                                  attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def variants(name: str, batch: int, threads: int, folder: Path) -> tuple[dict[str, Any], dict]:
    """The three callables ``fn(new) -> tokens`` of one (model, batch) cell and their facts (kernel, file size)."""
    shape = SHAPES[name]
    sets = [f"{k}={v}" for k, v in shape.items()] + ["dropout=0.0"]
    hf = hf_model(shape)
    spec = padded_spec(folder) if batch > 1 else SPEC
    graph = load_spec(spec, sets)
    model = import_weights(graph, "hf-gpt2", hf.state_dict()).eval()
    lowered = import_weights(lower(graph, "cpu", "inference").graph, "hf-gpt2", hf.state_dict()).eval()
    path = folder / f"{name}-b{batch}.onnx"
    result = export_graph(graph, path, module=model, kv_cache=True, verify=False)
    session = make_session(str(path), "ort-cpu", threads, opt_level="all", spin=False)
    rng = np.random.default_rng(1)
    rows = [rng.integers(1, shape["vocab"], n).tolist() for n in PADDED_ROWS[:batch]]
    ids, mask = left_pad(rows)
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
    prompt = rows if batch > 1 else t_ids  # the torch decoder reads the padding inputs' roles from the model
    fns = {
        "hf": lambda new: hf.generate(t_ids, attention_mask=t_mask, max_new_tokens=new, min_new_tokens=new,
                                      do_sample=False, num_beams=1, pad_token_id=0).numpy(),
        "torch": lambda new: torch_generate(model, prompt, new).numpy(),
        "torch-lowered": lambda new: torch_generate(lowered, prompt, new).numpy(),
        "ort": lambda new: ort_generate(session, rows if batch > 1 else ids, new),
    }
    facts = {"kernels": sorted({c.kernel.name for c in result.choices.values()}), "onnx_mb": path.stat().st_size / 1e6,
             "prompt_lengths": list(PADDED_ROWS[:batch])}
    return fns, facts


def measure(name: str, batch: int, new: int, runs: int, threads: int, folder: Path) -> dict[str, Any]:
    """One cell: warm-up (2 tokens), ``runs`` alternating timed generations of ``new`` tokens, tokens/s."""
    fns, facts = variants(name, batch, threads, folder)
    for fn in fns.values():
        fn(2)
    out: dict[str, Any] = {}
    timed = {k: (lambda k=k, fn=fn: out.__setitem__(k, fn(new))) for k, fn in fns.items()}
    load_before = os.getloadavg()[0]
    times = alternate(timed, runs, warmup=0)
    same = all(np.array_equal(out["hf"], o) for o in out.values())
    tps = {k: batch * new / v["wall_median_s"] for k, v in times.items()}
    return {"model": name, "batch": batch, "new_tokens": new, "runs": runs, "threads": threads, "times": times,
            "tokens_per_s": tps, "vs_hf": {k: tps[k] / tps["hf"] for k in tps},
            "cpu_vs_hf": {k: times["hf"]["cpu_median_s"] / v["cpu_median_s"] for k, v in times.items()},
            "same_tokens_as_hf": same,
            "load_avg_1m": [load_before, os.getloadavg()[0]], **facts}


def parse_cells(text: str) -> list[tuple[str, int]]:
    """``gpt2:4,char`` -> [("gpt2", 4), ("char", 1), ("char", 4)]: MODEL[:BATCH] entries, in the order given."""
    cells: list[tuple[str, int]] = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        model, _, batch = item.partition(":")
        if model not in SHAPES or batch not in ("", "1", "4"):
            raise SystemExit(f"error: --cells: '{item}' is not MODEL[:BATCH] with MODEL in {sorted(SHAPES)} "
                             "and BATCH 1 or 4")
        cells += [(model, int(b)) for b in ([batch] if batch else ["1", "4"]) if (model, int(b)) not in cells]
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--cells", default=",".join(SHAPES), help="MODEL[:BATCH],... (default: every cell)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="the JSON file (default bench/results/generate.json)")
    ap.add_argument("--merge", action="store_true", help="keep the existing JSON's cells this run does not measure")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, batch in parse_cells(args.cells):
            cells.append(measure(name, batch, args.new, args.runs, args.threads, Path(tmp)))
            print(_row(cells[-1]), flush=True)
    path = args.out or RESULTS / "generate.json"
    if args.merge and path.exists():
        done = {(c["model"], c["batch"]) for c in cells}
        cells = [c for c in json.loads(path.read_text())["cells"] if (c["model"], c["batch"]) not in done] + cells
    cells.sort(key=lambda c: (list(SHAPES).index(c["model"]), c["batch"]))
    write("generate", {"machine": machine(), "cells": cells}, path)
    print(f"wrote {path}")


def _row(c: dict[str, Any]) -> str:
    t, r, cpu = c["tokens_per_s"], c["vs_hf"], c["cpu_vs_hf"]
    others = " | ".join(f"{k} {t[k]:7.1f} ({r[k]:.2f}x, CPU {cpu[k]:.2f}x)" for k in t if k != "hf")
    return (f"{c['model']:5s} batch {c['batch']}  hf {t['hf']:7.1f} tok/s | {others} | ort kernel "
            f"{'/'.join(c['kernels'])} | same tokens: {c['same_tokens_as_hf']} | load "
            f"{c['load_avg_1m'][0]:.1f}->{c['load_avg_1m'][1]:.1f}")


if __name__ == "__main__":
    main()
