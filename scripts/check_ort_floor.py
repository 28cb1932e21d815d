"""Prove the onnxruntime floor of the [onnx] extra: every zoo spec's default export loads and runs in that old ORT like torch.

    .venv/bin/python scripts/check_ort_floor.py                 # the floor declared in pyproject.toml
    .venv/bin/python scripts/check_ort_floor.py --ort 1.20.* 1.22.*   # other versions, one venv each
    .venv/bin/python scripts/check_ort_floor.py --venv /tmp/ort118 --specs mlp gpt_char

1. Exports the default export (target ort-cpu, the default fusions, the default opset) of every spec in
   specs/ and specs/seeds/ (small sizes: the tests' ``# small-sizes:`` / --set convention, randomized
   weights) with this environment into a temp folder, with inputs at sizes that are not the trace sizes
   (batch 2, other dims 5), the torch model's outputs and this environment's ORT outputs beside it.
2. Makes a throwaway venv (``python3 -m venv``; ``pip install onnxruntime==<floor>.* 'numpy<2'``) unless
   ``--venv`` names one, and there loads and runs every file (CPU provider, default optimizations).
3. Prints and writes (bench/results/ort_floor_<version>.json) a table: spec, opset, IR, contrib ops,
   loads / runs in the floor ORT, max |floor ORT - torch| and whether it is within 1e-4 · max(1, |torch|)
   (the export's own tolerance), and the current ORT's diff for comparison.

Exit status 1 when a default export does not load, run or match in a version checked.

Measured (58 specs, 57 exportable; kalman_filter is not): 1.18.1 and 1.20.1 fail MultiHeadAttention's
broadcast [B|1, 1, T, S] attention bias (longformer, bigbird, sparse_transformer; 1.18) and
GroupQueryAttention's attention_bias (t5_encoder_decoder; both); 1.22.1 has no opset-23 Attention op
(mixtral_style at its small sizes, where GQA and MHA do not apply); 1.23.0 runs that op with one kv head
for two query heads wrong (max diff 0.8); 1.23.2 runs all 57 within 1e-4 -- the [onnx] extra's floor.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "compilers" / "onnx"))   # the tests' small sizes and parity helpers

TOL = 1e-4

#: what runs in the floor venv: only numpy and onnxruntime there. Reads the job JSON, writes one result per spec.
CHILD = r'''
import json, sys, traceback
import numpy as np
import onnxruntime as ort

def diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    same = (np.isnan(a) & np.isnan(b)) | (a == b)
    return float(np.nan_to_num(np.where(same, 0.0, np.abs(a - b)), nan=np.inf).max()) if a.size else 0.0

jobs = json.load(open(sys.argv[1]))
out = {"ort_version": ort.__version__, "results": {}}
for job in jobs:
    r = {"loads": False, "runs": False, "max_diff": None, "error": None}
    try:
        sess = ort.InferenceSession(job["path"], providers=["CPUExecutionProvider"])
        r["loads"] = True
        data = np.load(job["data"])
        feeds = {i.name: data["in:" + i.name] for i in sess.get_inputs()}
        got = sess.run(job["outputs"], feeds)
        r["runs"] = True
        r["max_diff"] = max(diff(g, data["torch:" + n]) / s for g, n, s in zip(got, job["outputs"], job["scales"]))
    except Exception as exc:  # noqa: BLE001 - record the first line of what the old runtime says
        r["error"] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    out["results"][job["spec"]] = r
json.dump(out, open(sys.argv[2], "w"))
'''


def floor_from_pyproject() -> str:
    """The ``onnxruntime>=X`` of the [onnx] extra, as a pip version pattern ``X.*``."""
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"onnxruntime>=([0-9.]+)"', text)
    if not match:
        raise SystemExit("pyproject.toml declares no onnxruntime>= floor")
    return match.group(1) + ".*"


def spec_paths(only: list[str] | None) -> list[Path]:
    paths = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "specs" / "seeds").glob("*.yaml"))
    return [p for p in paths if not only or p.stem in only]


def export_one(path: Path, folder: Path) -> dict:
    """Export ``path``'s default export into ``folder`` with inputs, torch outputs (relative scales) and current-ORT
    diffs; returns the row (``job`` set when there is a file to run)."""
    import onnx

    from nngraph import load_spec
    from nngraph.compilers.onnx.export import ExportError, export_graph
    from nngraph.compilers.onnx.inputs import sample_inputs
    from nngraph.compilers.onnx.runner import make_session
    from nngraph.compilers.torch import build_module
    from onnx_support import ort_vs_torch, randomize, run_sizes, small_overrides, torch_outputs

    row = {"spec": str(path.relative_to(ROOT / "specs").with_suffix(""))}
    graph = load_spec(path, small_overrides(path))
    module = build_module(graph, seed=0).eval()
    randomize(module)
    out = folder / f"{path.stem}.onnx"
    try:
        result = export_graph(graph, out, module=module, verify=False, spec_file=str(path))
    except ExportError as exc:
        row["export"] = f"not exportable: {str(exc).splitlines()[0][:200]}"
        return row
    model = onnx.load(str(out), load_external_data=False)
    contrib = sorted({n.op_type for n in model.graph.node if n.domain == "com.microsoft"})
    row.update(export="ok", opset=result.opset, ir=model.ir_version, contrib=contrib)
    inputs = sample_inputs(graph, run_sizes(model, graph, 2, 5), seed=10)
    now = ort_vs_torch(make_session(out), graph, module, inputs)
    row["current_diff"] = max(d / s for d, s in now.values())
    want = torch_outputs(module, graph, inputs)
    data = folder / f"{path.stem}.npz"
    np.savez(data, **{f"in:{k}": v.numpy() for k, v in inputs.items()}, **{f"torch:{k}": v for k, v in want.items()})
    row["job"] = {"spec": row["spec"], "path": str(out), "data": str(data), "outputs": list(graph.outputs),
                  "scales": [now[n][1] for n in graph.outputs]}
    return row


def floor_venv(version: str, folder: Path) -> Path:
    """A new venv in ``folder`` with onnxruntime==``version`` and numpy<2; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"onnxruntime=={version}", "numpy<2"], check=True)
    return python


def run_in_floor(python: Path, jobs: list[dict], folder: Path) -> dict:
    """Run the CHILD script on ``jobs`` with ``python`` (the floor venv); returns its JSON."""
    (folder / "child.py").write_text(CHILD)
    (folder / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run([str(python), str(folder / "child.py"), str(folder / "jobs.json"), str(folder / "floor.json")],
                   check=True)
    return json.loads((folder / "floor.json").read_text())


def table(rows: list[dict], version: str) -> str:
    """The results as a Markdown table."""
    lines = [f"| spec | opset | IR | contrib ops | loads in ORT {version} | runs | max diff / scale "
             f"(floor) | within {TOL:g} | max diff / scale (current ORT) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["export"] != "ok":
            lines.append(f"| {r['spec']} | - | - | - | - | - | - | - | {r['export']} |")
            continue
        f = r["floor"]
        d = "-" if f["max_diff"] is None else f"{f['max_diff']:.1e}"
        lines.append(f"| {r['spec']} | {r['opset']} | {r['ir']} | {', '.join(r['contrib']) or '-'} | "
                     f"{'yes' if f['loads'] else 'no'} | {'yes' if f['runs'] else 'no: ' + str(f['error'])} | {d} | "
                     f"{'yes' if r['ok'] else 'no'} | {r['current_diff']:.1e} |")
    return "\n".join(lines)


def check_version(rows: list[dict], jobs: list[dict], version: str, folder: Path, venv: Path | None,
                  out: Path | None) -> list[str]:
    """Run ``jobs`` in onnxruntime ``version`` (a new venv, or ``venv``), print the table, write the JSON; returns
    the specs whose default export does not load, run or match there."""
    python = venv / "bin" / "python" if venv else floor_venv(version, folder / f"venv-{version.strip('.*')}")
    floor = run_in_floor(python, jobs, folder)
    for r in rows:
        if r["export"] == "ok":
            r["floor"] = floor["results"][r["spec"]]
            r["ok"] = r["floor"]["runs"] and r["floor"]["max_diff"] <= TOL
    print(table(rows, floor["ort_version"]))
    bad = [r["spec"] for r in rows if r["export"] == "ok" and not r["ok"]]
    print(f"\nonnxruntime {floor['ort_version']}: {sum(r.get('ok', False) for r in rows)} of "
          f"{sum(r['export'] == 'ok' for r in rows)} default exports load, run and match torch"
          + (f"; failing: {', '.join(bad)}" if bad else "") + "\n")
    target = out or ROOT / "bench" / "results" / f"ort_floor_{floor['ort_version']}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"onnxruntime": floor["ort_version"], "tolerance": TOL, "rows": rows}, indent=1))
    print(f"wrote {target}\n", flush=True)
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ort", nargs="+", help="onnxruntime versions to check, each in its own new venv "
                                                 "(default: pyproject's floor, X.*)")
    parser.add_argument("--venv", type=Path, help="use this venv (with onnxruntime and numpy) instead of a new one")
    parser.add_argument("--specs", nargs="*", help="only these spec stems")
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results/...)")
    args = parser.parse_args()
    versions = args.ort or [floor_from_pyproject()]
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    failing = False
    with tempfile.TemporaryDirectory(prefix="ort_floor_") as tmp:
        folder = Path(tmp)
        rows = [export_one(p, folder) for p in spec_paths(args.specs)]
        jobs = [r.pop("job") for r in rows if "job" in r]
        print(f"exported {len(rows)} specs in {time.perf_counter() - start:.0f} s", flush=True)
        for version in versions:
            failing |= bool(check_version(rows, jobs, version, folder, args.venv, args.json))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
