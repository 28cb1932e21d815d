"""``nngraph calibrate``: it measures this CPU's roofline and writes a target profile file that ``nngraph cost
--target FILE.json`` reads; ``-o`` follows the project's rule for outputs (checked before any work, written
atomically -- a temp file beside it, then a rename -- a regular file replaced, never a folder, a link or a
path under a file; refusals located at the path, exit 1, no traceback).

Oracles: the profile file's schema (positive peaks and bandwidth, a sorted curve of positive points); the
estimate of a hand-written profile in closed form (``max(FLOPs / FLOP/s, bytes / bandwidth)`` per node, the
curve read linearly in log-log); the file's bytes before and after a failed run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nngraph.cli import app
from nngraph.compilers.targets import calibrate as calibrate_module
from nngraph.compilers.targets import load_profiles
from nngraph.compilers.targets.profile_file import load_profile_file

MLP = Path(__file__).resolve().parents[3] / "specs" / "mlp.yaml"


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_quick_calibration_writes_a_profile_file_that_cost_reads(tmp_path):
    out = tmp_path / "cpu.json"
    result = _run("calibrate", "--quick", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert json.loads(result.stdout) == data
    roof = data["roofline"]
    assert data["base"] == "cpu" and roof["threads"] == torch.get_num_threads() and roof["clock"] == "wall"
    assert all(v > 0 for v in roof["peak_flops"].values()) and roof["bandwidth"] > 0
    assert roof["node_overhead_ms"] > 0 and roof["op_overhead_ms"] > 0 and roof["kernel_ms"] > 0
    for points in roof["gemm_curve"].values():  # FLOPs per call of the timed products, growing; FLOP/s > 0
        assert [p[0] for p in points] == sorted(p[0] for p in points) and all(p[1] > 0 for p in points)
    assert roof["gemm_curve"]["default"][0][0] == 2 * calibrate_module.QUICK.gemm[0] ** 3
    assert "--quick" in roof["source"]
    base, merged = load_profile_file(out, load_profiles()["profiles"])
    assert base == "cpu" and merged["roofline"] == roof and merged["sdpa"] == load_profiles()["profiles"]["cpu"]["sdpa"]
    cost = _run("cost", str(MLP), "--batch", "4", "--target", str(out), "--format", "json")
    assert cost.exit_code == 0, cost.output
    rep = json.loads(cost.stdout)
    assert rep["target"]["roofline"] == roof and rep["totals"]["ms"] > 0


def _profile(tmp_path: Path, roofline: dict) -> Path:
    path = tmp_path / "hand.json"
    path.write_text(json.dumps({"base": "cpu", "roofline": roofline}, indent=2))
    return path


def test_cost_target_file_prices_each_node_by_its_roofline(tmp_path):
    # mlp at batch 4: linears of 2·4·784·256, 2·4·256·256, 2·4·256·10 FLOPs; relus cost bytes only
    flops = [2 * 4 * 784 * 256, 2 * 4 * 256 * 256, 2 * 4 * 256 * 10]
    roof = {"peak_flops": {"float32": 1e9}, "bandwidth": 1e15, "node_overhead_ms": 0.5}
    rep = json.loads(_run("cost", str(MLP), "--batch", "4", "--target", str(_profile(tmp_path, roof)),
                          "--format", "json").stdout)
    assert rep["totals"]["ms"] == pytest.approx(1e3 * sum(flops) / 1e9 + 0.5 * len(rep["nodes"]), rel=1e-3)
    # training: (forward + backward) / forward times each node's forward -- 2x for the first linear (x is data:
    # no input gradient), 3x for the other linears; the two relus (no FLOPs) 3x their fixed cost
    rep = json.loads(_run("cost", str(MLP), "--batch", "4", "--mode", "training", "--target",
                          str(_profile(tmp_path, roof)), "--format", "json").stdout)
    linears = [(1e3 * f / 1e9 + 0.5) * k for f, k in zip(flops, (2, 3, 3))]
    assert rep["totals"]["ms"] == pytest.approx(sum(linears) + 2 * 3 * 0.5, rel=1e-3)
    # a curve: 1e8 FLOP/s at 1e3 FLOPs per call, 1e10 at 1e9; log-log between, flat outside
    roof["gemm_curve"] = {"default": [[1e3, 1e8], [1e9, 1e10]]}
    rep = json.loads(_run("cost", str(MLP), "--batch", "4", "--target", str(_profile(tmp_path, roof)),
                          "--format", "json").stdout)
    at = [10 ** (8 + 2 * (math.log10(f) - 3) / 6) for f in flops]
    assert rep["totals"]["ms"] == pytest.approx(1e3 * sum(f / a for f, a in zip(flops, at)) + 0.5 * len(rep["nodes"]),
                                                rel=1e-3)


@pytest.mark.parametrize("text,where,message", [
    ('{"base": "cpu",\n "roofline": {"peak_flops": {"float32": 1e10},\n   "bandwidth": -1}}', ":3:17",
     "'bandwidth' must be a positive number"),
    ('{"base": "gpu9", "roofline": {"peak_flops": {"float32": 1}, "bandwidth": 1}}', ":1:10", "unknown base profile"),
    ('{"base": "cpu",\n "roofline": {"peak_flops": {"float32": "fast"}, "bandwidth": 1}}', ":2:41",
     "peak_flops.float32 must be a positive number"),
    ('{"base": "cpu", "roofline": {"peak_flops": {"float32": 1}, "bandwidth": 1,\n "gemm_curve": {"conv": []}}}',
     ":2:16", "have a 'default' curve"),
    ('{"base": "cpu",\n "roofline": {"bandwidth": ]}}', ":2:28", "YAML syntax error"),
    ('{"base": "cpu", "roofline": {"peak_flops": {"float32": 1}, "bandwidth": 1,\n "kernel_ms": -0.01}}', ":2:15",
     "'kernel_ms' must be a number >= 0"),
])
def test_a_bad_profile_file_is_a_located_error(tmp_path, text, where, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    result = _run("cost", str(MLP), "--target", str(path))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{path}{where}" in result.output and message in result.output, result.output


@pytest.fixture
def no_measuring(monkeypatch):
    """Calibration fails the test if it starts: a refused -o must cost nothing."""
    def refuse(*_a, **_k):
        raise AssertionError("measured before checking -o")
    monkeypatch.setattr(calibrate_module, "profile", refuse)


def test_bad_output_paths_are_refused_before_measuring(tmp_path, no_measuring):
    folder = tmp_path / "f.json"
    folder.mkdir()
    afile = tmp_path / "a.json"
    afile.write_text("{}")
    link = tmp_path / "l.json"
    link.symlink_to(afile)
    for path, message in ((folder, "is a folder"), (afile / "x.json", "is a file, not a folder"),
                          (link, "is a symbolic link")):
        result = _run("calibrate", "--quick", "-o", str(path))
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.output.startswith(f"{path}: error: ") and message in result.output, result.output
    result = _run("calibrate", "-o", str(tmp_path / "cpu.txt"))
    assert result.exit_code == 2 and "does not end in .json" in result.output


def test_output_is_written_atomically_and_a_failed_run_leaves_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "cpu.json"
    out.write_text("old\n")

    def broken(*_a, **_k):
        raise RuntimeError("timer failed")
    monkeypatch.setattr(calibrate_module, "profile", broken)
    result = _run("calibrate", "--quick", "-o", str(out))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert out.read_text() == "old\n" and os.listdir(tmp_path) == ["cpu.json"]
    monkeypatch.undo()
    renames = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((Path(a), Path(b))), real(a, b)))
    result = _run("calibrate", "--quick", "-o", str(out))
    assert result.exit_code == 0, result.output
    # the usual -o rule: a regular file is replaced, by a rename of a complete temp file written beside it
    (tmp, dst), = renames
    assert dst == out and tmp.parent == tmp_path and tmp.name.startswith(".cpu.json.")
    assert json.loads(out.read_text())["base"] == "cpu" and os.listdir(tmp_path) == ["cpu.json"]


#: rms_norm (0 FLOPs, 6 kernels), gated_mlp (2·(2·4·16·32) + 2·4·32·16 FLOPs in 3 products, 5 kernels),
#: linear (2·4·16·4 FLOPs, 1 kernel) at batch 4
SMALL = """nngraph: 1
name: small
inputs:
  x: {shape: [batch, 16], dtype: float32}
graph:
  - {name: norm, op: rms_norm, in: x}
  - {name: ffn, op: gated_mlp, in: norm, hidden: 32}
  - {name: head, op: linear, in: ffn, out: 4}
outputs: {y: head}
"""


def test_fixed_costs_count_each_nodes_kernels_and_the_curve_is_read_per_product(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL)
    roof = {"peak_flops": {"float32": 1e10}, "bandwidth": 1e15, "node_overhead_ms": 0.5, "kernel_ms": 0.25,
            "gemm_curve": {"default": [[1e3, 1e8], [1e9, 1e10]]}}

    def total(roofline: dict) -> float:
        out = _run("cost", str(spec), "--batch", "4", "--target", str(_profile(tmp_path, roofline)), "--format", "json")
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)["totals"]["ms"]
    # gated_mlp: 12288 FLOPs as 3 products of 4096, each read on the curve at 4096 FLOPs
    per_product = 10 ** (8 + 2 * (math.log10(4096) - 3) / 6)
    ffn = 1e3 * 12288 / per_product
    # linear: 512 FLOPs, below the curve's first point -- no faster than it: 1e3 FLOPs / 1e8 FLOP/s
    head = 1e3 * 1e3 / 1e8
    assert total(roof) == pytest.approx(ffn + head + 3 * 0.5 + (6 + 5 + 1) * 0.25, rel=1e-3)
    # a profile calibrated before kernel_ms existed: each kernel costs op_overhead_ms, else nothing
    del roof["kernel_ms"]
    assert total({**roof, "op_overhead_ms": 0.1}) == pytest.approx(ffn + head + 3 * 0.5 + 12 * 0.1, rel=1e-3)
    assert total(roof) == pytest.approx(ffn + head + 3 * 0.5, rel=1e-3)
