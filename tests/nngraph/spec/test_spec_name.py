"""A spec's ``name`` names output folders (``out/train/NAME``): a path there is refused at its line."""

from __future__ import annotations

import json

import pytest

from nngraph.spec import check_spec

SPEC = """\
nngraph: 1
name: {name}
inputs:
  x: {{shape: [batch, 8], dtype: float32}}
graph:
  - {{name: out, op: relu, in: x}}
outputs: {{out: out}}
"""


SEPARATORS = "a name holds no path separators or control characters"


@pytest.mark.parametrize(("name", "why"), [("../../..", SEPARATORS), ("/tmp/elsewhere", SEPARATORS),
                                           ("a\\b", SEPARATORS), ("..", "'..' is not a name"), ("", "'' is not a name")])
def test_a_name_that_is_a_path_is_refused_at_its_line(tmp_path, name, why):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(name=json.dumps(name)))  # a JSON string is a YAML string
    graph, diag = check_spec(path)
    errors = [d for d in diag if d.severity == "error"]
    assert graph is None or errors
    assert [(str(d.pos), d.message, d.hint) for d in errors] == [
        (f"{path}:2:7", f"'name' {name!r} cannot name an output folder: {why}",
         "use letters, digits, '_', '-' and '.', e.g. name: my_model")]


def test_an_ordinary_name_is_accepted(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(name="gpt-tiny.v2_1"))
    graph, diag = check_spec(path)
    assert graph is not None and graph.name == "gpt-tiny.v2_1" and not list(diag)
