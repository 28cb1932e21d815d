"""The `nngraph` command line: exit codes, diagnostic formats, and the inspect/graph/docs/schema commands."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nngraph import cli
from nngraph.commands import inspect_text

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "specs" / "mlp.yaml"
NNGRAPH = Path(sys.executable).parent / "nngraph"

# Line 6 col 40: 'out: 0' is below the minimum; line 7 col 19: a misspelled op.
BAD = """\
nngraph: 1
name: bad
inputs:
  x: {shape: [batch, 4], dtype: float32}
graph:
  - {name: fc, op: linear, in: x, out: 0}
  - {name: y, op: linaer, in: fc, out: 2}
outputs: {y: fc}
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    return path


def run(runner: CliRunner, *args: str):
    return runner.invoke(cli.app, [str(a) for a in args])


# ----- validate: exit codes and formats ---------------------------------------------------------

def test_valid_spec_exits_0_and_reports_the_parameter_count(runner):
    res = run(runner, "validate", MLP)
    assert res.exit_code == 0, res.output
    assert f"ok: {MLP} (269,322 parameters)" in res.stdout
    assert "1 valid, 0 invalid" in res.stdout


def test_invalid_spec_exits_1_with_file_line_col_in_stderr(runner, bad):
    res = run(runner, "validate", bad)
    assert res.exit_code == 1
    assert f"{bad}:6:40: error: parameter 'out' of node 'fc' (linear): must be >= 1, got 0" in res.stderr
    assert f"{bad}:7:19: error: unknown op 'linaer' in node 'y'" in res.stderr
    assert "did you mean 'linear'?" in res.stderr
    assert "0 valid, 1 invalid" in res.stderr


def test_unknown_option_is_a_usage_error_exit_2(runner):
    res = run(runner, "validate", "--bogus", MLP)
    assert res.exit_code == 2
    assert "No such option" in res.output and "--bogus" in res.output


def test_unknown_format_is_a_usage_error_exit_2(runner):
    assert run(runner, "validate", "--format", "xml", MLP).exit_code == 2


def test_missing_file_exits_1_with_a_message(runner, tmp_path):
    res = run(runner, "validate", tmp_path / "nope.yaml")
    assert res.exit_code == 1
    assert "nope.yaml" in res.stderr


def test_json_format_gives_file_line_col_and_message(runner, bad):
    res = run(runner, "validate", "--format", "json", bad)
    assert res.exit_code == 1
    items = json.loads(res.stdout)
    assert [(d["file"], d["line"], d["col"], d["severity"]) for d in items] == [
        (str(bad), 6, 40, "error"), (str(bad), 7, 19, "error")]
    assert items[0]["message"] == "parameter 'out' of node 'fc' (linear): must be >= 1, got 0"
    assert items[1]["message"] == "unknown op 'linaer' in node 'y'"


def test_json_format_of_a_valid_spec_is_an_empty_list(runner):
    res = run(runner, "validate", "--format", "json", MLP)
    assert res.exit_code == 0 and json.loads(res.stdout) == []


def test_github_format_emits_error_annotations(runner, bad):
    res = run(runner, "validate", "--format", "github", bad)
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    assert lines[0] == (f"::error file={bad},line=6,col=40::parameter 'out' of node 'fc' (linear): "
                        "must be >= 1, got 0 (hint: output features)")
    assert lines[1].startswith(f"::error file={bad},line=7,col=19::unknown op 'linaer' in node 'y'")
    assert all(re.match(r"^::error file=[^,]+,line=\d+,col=\d+::", line) for line in lines)


def test_directory_validates_every_yaml_file(runner, tmp_path, bad):
    shutil.copy(MLP, tmp_path / "good.yaml")
    res = run(runner, "validate", tmp_path)
    assert res.exit_code == 1
    assert "1 valid, 1 invalid" in res.stderr


def test_set_override_reaches_the_spec(runner):
    res = run(runner, "validate", MLP, "--set", "hidden=512")
    # (784*512+512) + (512*512+512) + (512*10+10)
    assert res.exit_code == 0 and "(669,706 parameters)" in res.stdout


# ----- entry points ----------------------------------------------------------------------------

def test_python_dash_m_nngraph_help_works():
    out = subprocess.run([sys.executable, "-m", "nngraph", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    for command in ("validate", "schema", "inspect", "graph", "docs"):
        assert command in out.stdout


@pytest.mark.skipif(not NNGRAPH.exists(), reason="console script not installed next to this python")
def test_console_script_validate_exit_codes(bad):
    ok = subprocess.run([str(NNGRAPH), "validate", str(MLP)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    fail = subprocess.run([str(NNGRAPH), "validate", str(bad)], capture_output=True, text=True, timeout=60)
    assert fail.returncode == 1 and f"{bad}:6:40:" in fail.stderr
    usage = subprocess.run([str(NNGRAPH), "validate", "--bogus", str(MLP)], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "No such option" in usage.stderr


# ----- schema and docs ---------------------------------------------------------------------------

def test_schema_dash_o_writes_the_schema(runner, tmp_path):
    out = tmp_path / "s" / "nngraph.schema.json"
    res = run(runner, "schema", "-o", out)
    assert res.exit_code == 0 and f"wrote {out}" in res.stdout
    from nngraph.schema import json_schema

    assert json.loads(out.read_text()) == json_schema()


def test_schema_check_reports_stale_file(runner, tmp_path):
    out = tmp_path / "schema.json"
    out.write_text("{}\n")
    res = run(runner, "schema", "-o", out, "--check")
    assert res.exit_code == 1
    assert f"{out} is stale; run `nngraph schema -o {out}`" in res.stderr
    assert run(runner, "schema", "-o", out).exit_code == 0
    assert run(runner, "schema", "-o", out, "--check").exit_code == 0


def test_docs_writes_the_reference_and_checks_it(runner, tmp_path):
    out = tmp_path / "ref.md"
    assert run(runner, "docs", "-o", out, "--check").exit_code == 1  # missing
    res = run(runner, "docs", "-o", out)
    assert res.exit_code == 0
    from nngraph.docs import spec_reference

    assert out.read_text() == spec_reference()
    assert run(runner, "docs", "-o", out, "--check").exit_code == 0


def test_docs_to_stdout(runner):
    res = run(runner, "docs")
    assert res.exit_code == 0 and res.stdout.startswith("# Spec reference\n")
    assert "### `linear`" in res.stdout


def test_check_without_output_is_a_usage_error(runner):
    assert run(runner, "docs", "--check").exit_code == 2


# ----- inspect -------------------------------------------------------------------------------------

def test_inspect_text_table(runner):
    res = run(runner, "inspect", MLP)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert ["body.0.fc", "linear", "float32[batch,", "256]", "200,960"] in [line.split() for line in lines]
    assert lines[-1] == "total: 269,322 parameters in 5 nodes"


def test_inspect_json_has_the_same_data(runner):
    res = run(runner, "inspect", MLP, "--format", "json", "--set", "classes=3")
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["total_params"] == 200_960 + 65_792 + (256 * 3 + 3)
    head = next(n for n in data["nodes"] if n["name"] == "head")
    assert head["outputs"]["out"] == {"shape": ["batch", 3], "dtype": "float32"}


def test_inspect_invalid_spec_exits_1_with_positions(runner, bad):
    res = run(runner, "inspect", bad)
    assert res.exit_code == 1 and f"{bad}:6:40: error:" in res.stderr


def test_inspect_rich_rendering_and_plain_fallback(monkeypatch, capsys):
    from nngraph.inspect import summarize
    from nngraph.spec import load_spec

    summary = summarize(load_spec(MLP))
    assert inspect_text(summary, want_rich=True) is None  # printed through rich
    printed = capsys.readouterr().out
    assert "body.0.fc" in printed and "200,960" in printed and "total: 269,322 parameters" in printed
    monkeypatch.setitem(sys.modules, "rich.console", None)  # rich unavailable
    text = inspect_text(summary, want_rich=True)
    assert text is not None and text.endswith("total: 269,322 parameters in 5 nodes")


# ----- graph ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix,start", [("dot", 'digraph "mlp" {'), ("mmd", "flowchart TB")])
def test_graph_writes_dot_and_mermaid(runner, tmp_path, suffix, start):
    out = tmp_path / f"mlp.{suffix}"
    res = run(runner, "graph", MLP, "-o", out)
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.startswith(start) and "body.0.fc" in text.replace("_", ".")


def test_graph_without_output_prints_dot(runner):
    res = run(runner, "graph", MLP)
    assert res.exit_code == 0 and res.stdout.startswith('digraph "mlp" {')
    assert '"head" -> "output:logits" [label="float32[batch, 10]"];' in res.stdout


def test_graph_unknown_suffix_is_a_usage_error(runner, tmp_path):
    res = run(runner, "graph", MLP, "-o", tmp_path / "g.jpg")
    assert res.exit_code == 2 and "unknown drawing format 'jpg'" in res.output


def test_graph_svg_without_graphviz_exits_1_with_advice(runner, tmp_path, monkeypatch):
    import nngraph.draw

    monkeypatch.setattr(nngraph.draw.shutil, "which", lambda name: None)
    res = run(runner, "graph", MLP, "-o", tmp_path / "g.svg")
    assert res.exit_code == 1
    assert "install graphviz" in res.stderr and "write .dot or .mmd instead" in res.stderr
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_graph_svg_with_graphviz(runner, tmp_path):
    res = run(runner, "graph", MLP, "-o", tmp_path / "g.svg")
    assert res.exit_code == 0, res.output
    assert "<svg" in (tmp_path / "g.svg").read_text()


def test_ops_lists_families():
    res = CliRunner().invoke(cli.app, ["ops", "--family", "dense"])
    assert res.exit_code == 0
    assert res.stdout.startswith("dense:\n  linear")


def test_ops_with_an_unknown_family_is_a_usage_error_listing_the_families():
    from nngraph.registry import families

    res = CliRunner().invoke(cli.app, ["ops", "--family", "nope"])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr == f"error: --family nope: no such family (families: {', '.join(families())})\n"


# ----- pre-commit hook ------------------------------------------------------------------------------

def test_pre_commit_hook_runs_validate_on_spec_yaml_files():
    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    [hook] = [h for h in hooks if h["id"] == "nngraph-validate"]
    assert hook["entry"] == "nngraph validate" and hook["language"] == "python" and hook["pass_filenames"] is True
    files = re.compile(hook["files"])
    assert files.search("specs/mlp.yaml") and files.search("specs/sub/lib.yml")
    assert not files.search("docs/spec-reference.md") and not files.search("tests/data/x.yaml")
    # pre-commit calls the entry with the matching file names appended
    res = CliRunner().invoke(cli.app, hook["entry"].split()[1:] + [str(MLP)])
    assert res.exit_code == 0


# ----- the validate speed benchmark ------------------------------------------------------------------

def test_validate_speed_bench_runs_and_writes_json(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "validate_speed.py"), "--runs", "1", "--spec", str(MLP),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["spec"] == "specs/mlp.yaml" and data["single_spec_process"]["runs"] == 1
    assert data["single_spec_process"]["exit_codes"] == [0]
    assert 0 < data["single_spec_process"]["wall_median_s"] < 60
    in_proc = data["all_specs_in_process"]
    assert in_proc["files"] >= 1 and len(in_proc["per_file_s"]) == in_proc["files"]
    assert "specs/mlp.yaml" in in_proc["per_file_s"]
    assert "load op registry" in data["phases_one_process"]
    assert "(a) validate specs/mlp.yaml x1 processes" in proc.stdout


def test_a_run_time_error_shows_the_spec_node_without_debug(capsys):
    """The generated forward's note (which spec node failed, where it is written) reaches the user without --debug."""
    import typer

    from nngraph.compilers.torch import compile_spec

    model = compile_spec(MLP)

    def body() -> int:
        import torch

        model(torch.randn(2, 100))
        return 0

    with pytest.raises(typer.Exit) as info:
        cli.run_guarded(body)
    err = capsys.readouterr().err
    fc_line = next(i for i, line in enumerate(MLP.read_text().splitlines(), 1) if "op: linear" in line)
    assert info.value.exit_code == 1 and "Traceback" not in err
    assert re.search(rf"\n  in node 'body\.0\.fc' \(linear\) at \S*specs/mlp\.yaml:{fc_line}:\d+\n", err), err
    assert "\n  graph input 'x' has shape [2, 100], the spec declares [batch, 784] (dim 1: expected 784, got 100)\n" in err
    assert err.rstrip().endswith("(run with --debug for the traceback)")
