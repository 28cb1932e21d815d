"""How fast is `nngraph validate`? It runs in CI and pre-commit on every commit: the goal is < 0.5 s per process.

Measures
  (a) N fresh processes of ``nngraph validate SPEC`` (default specs/gpt2_small.yaml, else specs/mlp.yaml):
      wall time (median/min/max) and the child's CPU time (user+sys; steadier than wall on a busy machine);
  (b) validating every spec in specs/ in one process: in-process ``check_spec`` per file (after imports),
      and N runs of the CLI process on the directory;
  (d) with ``--zoo``: every spec under specs/ (recursively, seeds included) in its own fresh process,
      ``--zoo-runs`` times each: per-spec median wall and CPU time against the goal (the symbolic dim algebra
      of nngraph/symdim.py runs in each);
  (c) where one process's time goes: interpreter start-up, stdlib, PyYAML, nngraph, loading the op registry,
      check_spec (CPU and wall per phase, one fresh process). The usual forms of `validate` never import
      typer/click/rich (cli.py parses them itself), so those are not phases.

On a machine busy with other work wall time includes waiting for a CPU; the CPU time is then the better
estimate of the wall time on an idle machine, so both are checked against the goal.

Python bytecode caching is on for the children (a warm-up run writes ``__pycache__``), as on a developer
machine, even when this shell sets PYTHONDONTWRITEBYTECODE; ``--no-bytecode-cache`` measures the cold case
(every module compiled from source each run, stdlib included).

Usage:  .venv/bin/python bench/validate_speed.py [--spec specs/x.yaml] [--runs 10] [--no-bytecode-cache]
                                                [--zoo [--zoo-runs 3]]
Writes bench/results/validate_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 0.5

_PHASES = r"""
import sys, time
t0, c0 = time.perf_counter(), time.process_time()
out = {}
def mark(label, _s=[t0, c0]):
    t, c = time.perf_counter(), time.process_time()
    out[label] = {"wall_s": t - _s[0], "cpu_s": c - _s[1]}
    _s[0], _s[1] = t, c
import pathlib, dataclasses, json; mark("stdlib (pathlib, dataclasses, json)")
import yaml; mark("import yaml")
import nngraph; mark("import nngraph (spec, ir, infer)")
from nngraph.registry import registry; registry(); mark("load op registry")
from nngraph.spec import check_spec
check_spec(sys.argv[1]); mark("check_spec")
import json; print(json.dumps(out))
"""


def _nngraph_exe() -> list[str]:
    exe = Path(sys.executable).parent / "nngraph"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("nngraph")
    return [found] if found else [sys.executable, "-m", "nngraph"]


def _child_env(cold: bool, cache_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    if cold:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = cache_dir  # empty and never written: nothing cached
    return env


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall s, child cpu s, exit code) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')}")
    return wall, cpu, proc.returncode


def _stats(samples: list[tuple[float, float, int]]) -> dict:
    walls, cpus = [s[0] for s in samples], [s[1] for s in samples]
    return {"runs": len(samples), "wall_median_s": statistics.median(walls), "wall_min_s": min(walls),
            "wall_max_s": max(walls), "cpu_median_s": statistics.median(cpus), "cpu_min_s": min(cpus),
            "exit_codes": sorted({s[2] for s in samples})}


def _repeat(cmd: list[str], runs: int, env: dict[str, str]) -> dict:
    _timed(cmd, env)  # warm-up: page cache, and __pycache__ when caching is on
    return _stats([_timed(cmd, env) for _ in range(runs)])


def _in_process(files: list[Path]) -> dict:
    t = time.perf_counter()
    from nngraph.registry import registry
    from nngraph.spec import check_spec

    registry()
    setup = time.perf_counter() - t
    per_file, failed = {}, []
    t_all = time.perf_counter()
    for f in files:
        t = time.perf_counter()
        graph, diag = check_spec(f)
        per_file[str(f.relative_to(ROOT))] = time.perf_counter() - t
        if any(d.severity == "error" for d in diag):
            failed.append(str(f.relative_to(ROOT)))
    total = time.perf_counter() - t_all
    return {"files": len(files), "imports_and_registry_s": setup, "total_s": total,
            "mean_per_file_s": total / max(len(files), 1), "per_file_s": per_file, "invalid": failed}


def _phases(spec: Path, env: dict[str, str]) -> dict:
    subprocess.run([sys.executable, "-c", _PHASES, str(spec)], cwd=ROOT, env=env, capture_output=True)  # warm-up
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PHASES, str(spec)], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    phases = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    in_script = {k: sum(p[k] for p in phases.values()) for k in ("wall_s", "cpu_s")}
    phases = {"interpreter start-up (site, encodings)": {"wall_s": max(wall - in_script["wall_s"], 0.0),
                                                        "cpu_s": max(cpu - in_script["cpu_s"], 0.0)}, **phases}
    return phases


def _zoo(exe: list[str], runs: int, env: dict[str, str]) -> dict:
    """(d): one fresh ``validate SPEC`` process per zoo spec, ``runs`` times each (after one warm-up)."""
    per_spec = {}
    for f in sorted((ROOT / "specs").rglob("*.y*ml")):
        per_spec[str(f.relative_to(ROOT))] = _repeat(exe + ["validate", "-q", str(f)], runs, env)
    walls = [r["wall_median_s"] for r in per_spec.values()]
    cpus = [r["cpu_median_s"] for r in per_spec.values()]
    return {"specs": len(per_spec), "runs_per_spec": runs, "wall_max_s": max(walls), "cpu_max_s": max(cpus),
            "wall_median_s": statistics.median(walls), "cpu_median_s": statistics.median(cpus),
            "over_goal_cpu": sorted(k for k, r in per_spec.items() if r["cpu_median_s"] > GOAL_S),
            "per_spec": per_spec}


def _print_zoo(zoo: dict) -> None:
    ms = lambda s: f"{1000 * s:8.1f}"  # noqa: E731
    print(f"(d) each zoo spec in its own process ({zoo['specs']} specs, median of {zoo['runs_per_spec']} runs):")
    print(f"    {'spec':<52} {'wall ms':>9} {'cpu ms':>8}")
    for name, r in sorted(zoo["per_spec"].items(), key=lambda kv: -kv[1]["cpu_median_s"]):
        print(f"    {name:<52} {ms(r['wall_median_s']):>9} {ms(r['cpu_median_s'])}")
    print(f"    {'max over specs':<52} {ms(zoo['wall_max_s']):>9} {ms(zoo['cpu_max_s'])}")
    verdict = "meets" if not zoo["over_goal_cpu"] else "MISSES (" + ", ".join(zoo["over_goal_cpu"]) + ")"
    print(f"goal (d): every spec's cpu median <= {GOAL_S * 1000:.0f} ms: {verdict}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", type=Path, help="spec for (a) (default: specs/gpt2_small.yaml, else specs/mlp.yaml)")
    ap.add_argument("--runs", type=int, default=10, help="processes per measurement (default 10)")
    ap.add_argument("--no-bytecode-cache", action="store_true", help="children compile every module from source")
    ap.add_argument("--zoo", action="store_true", help="also (d): every spec under specs/ in its own process")
    ap.add_argument("--zoo-runs", type=int, default=3, help="processes per spec for (d) (default 3)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "validate_speed.json")
    args = ap.parse_args(argv)

    spec = args.spec or next(p for p in (ROOT / "specs" / "gpt2_small.yaml", ROOT / "specs" / "mlp.yaml") if p.exists())
    spec = spec if spec.is_absolute() else (Path.cwd() / spec).resolve()
    files = sorted((ROOT / "specs").glob("*.y*ml"))
    exe = _nngraph_exe()
    with tempfile.TemporaryDirectory() as empty_cache:
        env = _child_env(args.no_bytecode_cache, empty_cache)
        single = _repeat(exe + ["validate", str(spec)], args.runs, env)
        directory = _repeat(exe + ["validate", "-q", str(ROOT / "specs")], args.runs, env)
        phases = _phases(spec, env)
        zoo = _zoo(exe, args.zoo_runs, env) if args.zoo else None
    in_proc = _in_process(files)

    result = {
        "spec": str(spec.relative_to(ROOT)) if spec.is_relative_to(ROOT) else str(spec),
        "bytecode_cache": not args.no_bytecode_cache,
        "goal_s": GOAL_S,
        "meets_goal_wall": single["wall_median_s"] < GOAL_S,
        "meets_goal_cpu": single["cpu_median_s"] < GOAL_S,
        "single_spec_process": single,
        "all_specs_process": {**directory, "files": len(files)},
        "all_specs_in_process": in_proc,
        "phases_one_process": phases,
        "zoo_one_process_per_spec": zoo,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1m": os.getloadavg()[0]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    ms = lambda s: f"{1000 * s:8.1f}"  # noqa: E731
    print(f"nngraph validate speed  (bytecode cache {'on' if result['bytecode_cache'] else 'off'}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")
    print(f"{'measurement':<48} {'median ms':>9} {'min ms':>8} {'cpu ms':>8}")
    print(f"{'(a) validate ' + result['spec'] + f' x{args.runs} processes':<48} {ms(single['wall_median_s']):>9} "
          f"{ms(single['wall_min_s'])} {ms(single['cpu_median_s'])}")
    print(f"{f'(b) validate specs/ ({len(files)} files) x{args.runs} processes':<48} "
          f"{ms(directory['wall_median_s']):>9} {ms(directory['wall_min_s'])} {ms(directory['cpu_median_s'])}")
    print(f"{f'(b) check_spec in-process, all {len(files)} files':<48} {ms(in_proc['total_s']):>9}")
    print(f"{'    (imports + op registry before that)':<48} {ms(in_proc['imports_and_registry_s']):>9}")
    print("(c) one process, by phase:                          wall ms   cpu ms")
    for label, p in phases.items():
        print(f"    {label:<44} {ms(p['wall_s']):>9} {ms(p['cpu_s'])}")
    verdict = lambda ok: "meets" if ok else "MISSES"  # noqa: E731
    print(f"goal: (a) median < {GOAL_S * 1000:.0f} ms: wall {verdict(result['meets_goal_wall'])} "
          f"({ms(single['wall_median_s']).strip()} ms), cpu {verdict(result['meets_goal_cpu'])} "
          f"({ms(single['cpu_median_s']).strip()} ms)")
    if zoo is not None:
        _print_zoo(zoo)
    if in_proc["invalid"]:
        print(f"note: invalid specs: {', '.join(in_proc['invalid'])}")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
