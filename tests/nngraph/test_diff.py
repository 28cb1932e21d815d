"""``nngraph diff``: nodes added/removed/renamed/changed and the parameter and FLOP deltas, against hand counts.

mlp.yaml is 784 -> 256 -> 256 -> 10 (two copies of a dense_relu block, then head): 269,322 parameters and
2·(784·256 + 256·256 + 256·10) forward FLOPs per row.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from nngraph.cli import app

MLP = (Path(__file__).resolve().parents[2] / "specs" / "mlp.yaml").read_text()


def _spec(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def _diff(a: str, b: str, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["diff", a, b, "--dim", "batch=2", *extra])
    return result.exit_code, result.output


def test_a_wider_hidden_layer_changes_shapes_params_and_flops(tmp_path):
    a = _spec(tmp_path, "a", MLP)
    b = _spec(tmp_path, "b", MLP.replace("hidden: 256", "hidden: 300"))
    code, out = _diff(a, b, "--format", "json")
    assert code == 0
    d = json.loads(out)
    assert d["changed"]["body.0.fc"]["params"] == {"out": [256, 300]}
    assert d["changed"]["body.0.fc"]["shape"] == ["float32[batch, 256]", "float32[batch, 300]"]
    assert d["changed"]["body.1.fc"]["n_params"] == [256 * 256 + 256, 300 * 300 + 300]
    new = 784 * 300 + 300 + 300 * 300 + 300 + 300 * 10 + 10
    assert d["total"]["params"] == [269_322, new]
    assert d["total"]["flops"] == [2 * 2 * (784 * 256 + 256 * 256 + 256 * 10), 2 * 2 * (784 * 300 + 300 * 300 + 300 * 10)]
    body = next(x for x in d["blocks"] if x["name"] == "body")
    assert body["params"] == [269_322 - 2570, new - 3010]
    assert _diff(a, b, "--fail-on", "shapes")[0] == 1
    assert _diff(a, b, "--fail-on", "params")[0] == 1


def test_renamed_removed_and_added_nodes(tmp_path):
    a = _spec(tmp_path, "a", MLP)
    renamed = MLP.replace("name: head", "name: classifier").replace("logits: head", "logits: classifier")
    code, out = _diff(a, _spec(tmp_path, "b", renamed), "--fail-on", "params", "--fail-on", "shapes")
    assert code == 0 and "- head -> classifier" in out and "added: 0" in out and "removed: 0" in out
    shorter = MLP.replace("repeat: 2", "repeat: 1")
    code, out = _diff(a, _spec(tmp_path, "c", shorter), "--format", "md", "--fail-on", "params")
    assert code == 1
    assert "**removed**: 2" in out and "- `body.1.fc` (linear, 65,792 params)" in out
    assert "params 269,322 -> 203,530 (-65,792)" in out


def test_diff_of_a_spec_with_itself_is_empty_and_a_bad_format_is_a_usage_error(tmp_path):
    a = _spec(tmp_path, "a", MLP)
    code, out = _diff(a, a, "--fail-on", "params", "--fail-on", "shapes")
    assert code == 0 and "changed: 0" in out and "(+0)" in out
    assert _diff(a, a, "--format", "html")[0] == 2
