"""Training throughput: `nngraph train`'s loop vs the same model and step written by hand in plain PyTorch.

Both train the compiled specs/gpt_char.yaml (a tiny GPT, 108,480 parameters) on random 64-character
windows of the bundled corpus, batch 32, AdamW with warmup + cosine decay and gradient clipping at 1.0.

* ``nngraph``: :class:`nngraph.compilers.train.loop.Trainer` and :func:`run_loop` exactly as ``nngraph train``
  runs them (task batching, loss, logging every 10 steps to metrics.jsonl; evaluation and checkpoints
  are set beyond the measured steps);
* ``plain``: the loop a user writes by hand: slice windows, ``model(tokens=x)``, cross-entropy,
  ``backward``, ``clip_grad_norm_``, ``opt.step()``, ``sched.step()``, ``zero_grad``.

Rounds alternate between the two (bench/_timing.alternate), ``--steps`` steps per round after a warm-up
round; the figure is tokens/s from the median wall time per round. Goal: nngraph / plain >= 0.97.
Writes a table and bench/results/train_throughput.json.

    .venv/bin/python bench/train_throughput.py [--steps 40] [--runs 5] [--threads 1]

``--packing``: packed vs padded training of gpt_char (issue 23) on variable-length documents: the
blank-line-separated blocks of the bundled Shakespeare (830 documents, 7 to 1,764 characters, median 76; cut
at 512), alternating in one run, the same optimizer and weights' seed:

* ``packed``: specs/gpt_char_packed.yaml (document mask + per-document positions), rows of 512 characters
  filled with whole documents by ``train.data.pack`` (compilers/train/data/packing.py), 4 rows a step;
* ``padded``: specs/gpt_char.yaml (causal), one document per row, 16 rows a step right-padded to the
  longest of the batch (causal attention never reads the padding; its targets are masked).

The figure is real tokens per second: tokens that belong to a document (never padding), the mean per round
over the median wall time of a round. Goal: packed / padded >= 1.5. Writes
bench/results/train_packing.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import alternate, machine, write  # noqa: E402

SPEC = Path(__file__).resolve().parent.parent / "specs" / "gpt_char.yaml"
GOAL = 0.97


def nngraph_variant(steps: int, out: Path):
    from nngraph.compilers.train.config import load_run_config
    from nngraph.compilers.train.distributed import Dist
    from nngraph.compilers.train.logging import MetricsLog, Progress
    from nngraph.compilers.train.loop import Trainer, run_loop
    from nngraph.compilers.train.plan import build_plan

    run = load_run_config(SPEC, ["train.steps=1000000", "train.eval.every=1000000", "train.checkpoint.every=1000000",
                                 "train.log={every: 10, tensorboard: false, plot: false, progress: false}"])
    plan = build_plan(run, Dist())
    tr = Trainer(run, plan, out, Dist(), lambda _t: None)
    log = MetricsLog(out / "metrics.jsonl", None)
    progress = Progress(plan.total_steps, 0, False, "tokens")
    tr.plan.task.data.streams.pop("val")  # the step-0 evaluation is not part of the loop being timed

    def chunk() -> None:
        run_loop(tr, log, None, progress, until=tr.step + steps)

    return chunk, tr, run


def plain_variant(steps: int, run):
    """The hand-written loop: same compiled model, same optimizer, schedule, clipping and data."""
    from nngraph.compilers.torch import build_module
    from nngraph.compilers.train.data import load_data

    cfg = run.values
    model = build_module(run.graph, seed=cfg["seed"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["optimizer"]["lr"], weight_decay=0.01, foreach=True)
    total, warmup = 1_000_000, cfg["schedule"]["warmup"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, 1.0))
    stream = load_data(cfg["data"], "language_model", SPEC.parent).streams["train"]
    bs, seq, vocab = cfg["batch_size"], cfg["data"]["seq_len"], run.graph.vars["vocab"]
    gen = torch.Generator().manual_seed(0)
    offs = torch.arange(seq + 1)
    state = {"step": 0}
    del total

    def chunk() -> None:
        model.train()
        for _ in range(steps):
            starts = torch.randint(0, stream.numel() - seq - 1, (bs,), generator=gen)
            window = stream[starts[:, None] + offs[None, :]]
            x, y = window[:, :-1], window[:, 1:]
            logits = model(tokens=x)
            loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            state["step"] += 1
            if state["step"] % 10 == 0:
                loss.item()  # a hand-written loop prints its loss now and then

    return chunk


PACKED_SPEC = SPEC.parent / "gpt_char_packed.yaml"
PACK_SETS = ["ctx=512", "vocab=61", "train.data.builtin=shakespeare", "train.data.seq_len=512"]
PACK_GOAL = 1.5


def _step_fn(model, opt, real: dict[str, int]):
    """One AdamW step of masked next-token cross-entropy; ``real`` counts the document tokens seen."""
    def step(inputs: dict[str, torch.Tensor], y: torch.Tensor, mask: torch.Tensor, n_real: int) -> None:
        logits = model(**inputs)
        loss = F.cross_entropy(logits[mask], y[mask])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        real["tokens"] += n_real
    return step


def packing_variants(steps: int):
    """The packed and the padded loop over the same documents; returns them and the real-token counters."""
    from nngraph.compilers.torch import build_module
    from nngraph.compilers.train.config import load_run_config
    from nngraph.compilers.train.data import load_data

    run = load_run_config(PACKED_SPEC, PACK_SETS)
    data = load_data(run.values["data"], "language_model", SPEC.parent)
    padded_run = load_run_config(SPEC, PACK_SETS)
    counts = {"packed": {"tokens": 0}, "padded": {"tokens": 0}}
    steps_of = {}
    for name, r in (("packed", run), ("padded", padded_run)):
        model = build_module(r.graph, seed=0)
        model.train()
        steps_of[name] = _step_fn(model, torch.optim.AdamW(model.parameters(), lr=3e-3, foreach=True), counts[name])
    docs, cursor = data.docs["train"], {"packed": 0, "padded": 0}

    def packed() -> None:
        for _ in range(steps):
            f = data.train_batch(cursor["packed"], 4, 0, 1, 0)
            cursor["packed"] += 1
            y = torch.cat([f["tokens"][:, 1:], f["tokens"][:, :1]], 1)
            # a document's tokens: its counted targets plus its last token (mask True -> False), never padding
            real = int(f["mask"].sum()) + int((f["mask"][:, :-1] & ~f["mask"][:, 1:]).sum())
            steps_of["packed"]({k: f[k] for k in ("tokens", "doc_ids", "positions")}, y, f["mask"], real)

    def padded() -> None:
        for _ in range(steps):
            i = cursor["padded"] * 16
            batch = [docs[(i + k) % len(docs)] for k in range(16)]
            cursor["padded"] += 1
            width = max(d.numel() for d in batch)
            x = torch.stack([F.pad(d, (0, width - d.numel())) for d in batch])
            lengths = torch.tensor([d.numel() for d in batch])
            mask = torch.arange(width)[None] < lengths[:, None] - 1
            steps_of["padded"]({"tokens": x}, torch.roll(x, -1, 1), mask, int(lengths.sum()))

    return {"packed": packed, "padded": padded}, counts


def packing_main(args: argparse.Namespace) -> None:
    """Packed vs padded real-token throughput, alternating rounds (see the module docstring)."""
    variants, counts = packing_variants(args.steps)
    res = alternate(variants, args.runs)
    rounds = args.runs + 1  # the warm-up round counted its tokens too
    rows = {k: {**v, "real_tokens_per_round": counts[k]["tokens"] / rounds,
                "real_tokens_per_s": counts[k]["tokens"] / rounds / v["wall_median_s"]} for k, v in res.items()}
    ratio = rows["packed"]["real_tokens_per_s"] / rows["padded"]["real_tokens_per_s"]
    print(f"gpt_char on Shakespeare paragraphs (docs <= 512 chars), {args.steps} steps x {args.runs} rounds, "
          f"{args.threads} thread(s); packed: 4 rows x 512, padded: 16 docs to the batch's longest")
    print(f"{'loop':<10}{'median s':>10}{'min s':>10}{'real tok/round':>16}{'real tok/s':>12}")
    for k, v in rows.items():
        print(f"{k:<10}{v['wall_median_s']:>10.3f}{v['wall_min_s']:>10.3f}{v['real_tokens_per_round']:>16,.0f}"
              f"{v['real_tokens_per_s']:>12,.0f}")
    print(f"packed / padded: {ratio:.2f}x real tokens/s ({'meets' if ratio >= PACK_GOAL else 'BELOW'} the goal "
          f"{PACK_GOAL})")
    path = write("train_packing", {"bench": "train_packing", "steps_per_round": args.steps, "runs": args.runs,
                                   "threads": args.threads, "results": rows, "ratio": ratio, "goal": PACK_GOAL,
                                   "machine": machine()}, args.out)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="training steps per timed round")
    ap.add_argument("--runs", type=int, default=5, help="alternating rounds")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady on a busy machine)")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/train_throughput.json)")
    ap.add_argument("--packing", action="store_true", help="packed vs padded documents instead (issue 23)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.packing:
        return packing_main(args)
    with tempfile.TemporaryDirectory() as tmp:
        ours, tr, run = nngraph_variant(args.steps, Path(tmp))
        plain = plain_variant(args.steps, run)
        res = alternate({"nngraph": ours, "plain": plain}, args.runs)
    tokens = args.steps * run.values["batch_size"] * run.values["data"]["seq_len"]
    rows = {k: {**v, "tokens_per_s": tokens / v["wall_median_s"], "tokens_per_cpu_s": tokens / v["cpu_median_s"]}
            for k, v in res.items()}
    ratio = rows["nngraph"]["tokens_per_s"] / rows["plain"]["tokens_per_s"]
    cpu_ratio = rows["nngraph"]["tokens_per_cpu_s"] / rows["plain"]["tokens_per_cpu_s"]
    print(f"GPT-tiny (specs/gpt_char.yaml, {sum(p.numel() for p in tr.task.model.parameters()):,} parameters), "
          f"batch {run.values['batch_size']} x {run.values['data']['seq_len']} tokens, {args.steps} steps x "
          f"{args.runs} rounds, {args.threads} thread(s)")
    print(f"{'loop':<10}{'median s':>10}{'min s':>10}{'tokens/s':>12}{'tokens/CPU s':>14}")
    for k, v in rows.items():
        print(f"{k:<10}{v['wall_median_s']:>10.3f}{v['wall_min_s']:>10.3f}{v['tokens_per_s']:>12,.0f}"
              f"{v['tokens_per_cpu_s']:>14,.0f}")
    verdict = "meets" if ratio >= GOAL else "BELOW"
    print(f"nngraph / plain: {ratio:.3f} wall, {cpu_ratio:.3f} CPU ({verdict} the goal {GOAL})")
    path = write("train_throughput", {"bench": "train_throughput", "model": "specs/gpt_char.yaml",
                                      "steps_per_round": args.steps, "runs": args.runs, "threads": args.threads,
                                      "tokens_per_round": tokens, "results": rows, "ratio_wall": ratio,
                                      "ratio_cpu": cpu_ratio, "goal": GOAL, "machine": machine()}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
