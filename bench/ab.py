"""A/B: one bench script run in two checkouts of nngraph, alternately, and each row's time compared.

    python bench/ab.py --base ../old --new . --metric lowered_s --rounds 3 -- attention.py --lengths 1024,4096 --runs 3

Why: a refactor promises "the same speed"; two runs minutes apart on a shared machine differ by up
to 2x, so the two revisions are run in turn (base, new, base, new, ...) and each row is compared by
the median of its rounds. Each checkout runs its own ``bench/SCRIPT`` with its own ``.venv`` (so the
code under test is exactly that revision's), writing JSON to a temporary file.

Rows are matched by their non-numeric fields and ``seq`` (e.g. case, seq, kernel / model, variant);
the table gives base and new medians of ``--metric`` and the ratio new/base (< 1: new is faster),
with the 1-minute load average before and after the run. Writes bench/results/ab_SCRIPT.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def run_once(checkout: Path, script: str, args: list[str], out: Path) -> list[dict]:
    """Run ``checkout/bench/script`` with that checkout's venv; return its JSON rows.

    A script without ``--out`` writes its default bench/results/NAME.json in that checkout."""
    path = checkout / "bench" / script
    takes_out = '"--out"' in path.read_text()
    if not takes_out:
        out = checkout / "bench" / "results" / f"{Path(script).stem}.json"
    cmd = [str(checkout / ".venv/bin/python"), str(path), *args, *(["--out", str(out)] if takes_out else [])]
    subprocess.run(cmd, cwd=checkout, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ))
    data = json.loads(out.read_text())
    return data.get("rows") or [r for res in data.get("results", []) for r in res["rows"]]  # onnx_latency: per model


def row_key(row: dict) -> tuple:
    """The fields that name a row: its strings, and ``seq``."""
    return tuple(sorted((k, v) for k, v in row.items() if isinstance(v, str) or k == "seq"))


def collect(rounds: list[list[dict]], metric: str) -> dict[tuple, list[float]]:
    by_key: dict[tuple, list[float]] = {}
    for rows in rounds:
        for r in rows:
            if isinstance(r.get(metric), (int, float)):
                by_key.setdefault(row_key(r), []).append(float(r[metric]))
    return by_key


def compare(base: dict[tuple, list[float]], new: dict[tuple, list[float]]) -> list[dict]:
    out = []
    for key in base:
        if key in new:
            b, n = statistics.median(base[key]), statistics.median(new[key])
            out.append({"row": dict(key), "base": b, "new": n, "ratio": n / b if b else float("nan")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="checkout of the old revision (with .venv)")
    ap.add_argument("--new", type=Path, required=True, help="checkout of the new revision (with .venv)")
    ap.add_argument("--metric", required=True, help="numeric row field to compare, e.g. lowered_s or ms_median")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("script", help="bench script name in bench/, then its arguments after --")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = [x for x in a.args if x != "--"]
    load0 = os.getloadavg()[0]
    runs: dict[str, list[list[dict]]] = {"base": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.rounds):
            for side, checkout in (("base", a.base), ("new", a.new)):
                rows = run_once(checkout.resolve(), a.script, args, Path(tmp) / f"{side}{i}.json")
                runs[side].append(rows)
                print(f"round {i + 1}/{a.rounds} {side} done", file=sys.stderr, flush=True)
    table = compare(collect(runs["base"], a.metric), collect(runs["new"], a.metric))
    load1 = os.getloadavg()[0]
    print(f"{'row':<60} {'base':>10} {'new':>10} {'new/base':>9}")
    for t in table:
        name = " ".join(f"{v}" for k, v in sorted(t["row"].items()))
        print(f"{name:<60} {t['base']:>10.4g} {t['new']:>10.4g} {t['ratio']:>8.2f}x")
    ratios = [t["ratio"] for t in table]
    if ratios:
        print(f"median ratio {statistics.median(ratios):.2f}x over {len(ratios)} rows, {a.rounds} alternating rounds; "
              f"load {load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ab_{Path(a.script).stem}.json"
    out.write_text(json.dumps({"metric": a.metric, "rounds": a.rounds, "load": [load0, load1],
                               "rows": [{**t, "row": t["row"]} for t in table]}, indent=1))


if __name__ == "__main__":
    main()
