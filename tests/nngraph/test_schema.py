"""The JSON Schema for specs: a valid Draft 2020-12 schema, committed up to date, accepting the zoo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from nngraph.registry import registry
from nngraph.schema import json_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "nngraph.schema.json"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(json_schema())


def _errors(validator: Draft202012Validator, data) -> list[str]:
    """Every error as 'path: message', including the sub-errors of anyOf branches."""
    out, todo = [], list(validator.iter_errors(data))
    while todo:
        e = todo.pop(0)
        out.append(f"{'/'.join(map(str, e.absolute_path))}: {e.message}")
        todo.extend(e.context or ())
    return out


def test_committed_schema_is_up_to_date():
    current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.is_file() else ""
    assert current == json.dumps(json_schema(), indent=2) + "\n", \
        "docs/nngraph.schema.json is stale: run `nngraph schema -o docs/nngraph.schema.json`"


def test_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_zoo_spec_validates_against_the_schema(path, validator):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert not _errors(validator, data)


def test_zoo_specs_point_editors_at_the_schema():
    for path in SPECS:
        assert path.read_text(encoding="utf-8").splitlines()[0] == \
            "# yaml-language-server: $schema=../docs/nngraph.schema.json", path.name


MLP = ROOT / "specs" / "mlp.yaml"


def test_misspelled_parameter_fails_schema_validation(validator):
    data = yaml.safe_load(MLP.read_text(encoding="utf-8"))
    head = next(n for n in data["graph"] if n["name"] == "head")
    head["biass"] = False
    errors = _errors(validator, data)
    assert errors and all(e.startswith("graph/1") for e in errors)
    assert any("'biass' was unexpected" in e for e in errors)


def test_misspelled_parameter_inside_a_block_fails(validator):
    data = yaml.safe_load(MLP.read_text(encoding="utf-8"))
    data["blocks"]["dense_relu"]["nodes"][0]["outt"] = 3
    assert any(e.startswith("blocks/dense_relu/nodes/0") for e in _errors(validator, data))


def test_unknown_op_and_wrong_value_type_fail(validator):
    base = {"nngraph": 1, "inputs": {"x": {"shape": ["batch", 4]}}, "outputs": ["y"]}
    assert _errors(validator, {**base, "graph": [{"name": "y", "op": "linearr", "in": "x", "out": 2}]})
    assert _errors(validator, {**base, "graph": [{"name": "y", "op": "linear", "in": "x", "out": "two"}]})
    assert not _errors(validator, {**base, "graph": [{"name": "y", "op": "linear", "in": "x", "out": "${2 * 2}"}]})


def test_every_op_example_validates_as_a_node(validator):
    for name, d in registry().items():
        node = {"name": "n", "op": name, **(d.example or {})}
        data = {"nngraph": 1, "graph": [node]}
        assert not _errors(validator, data), f"example of {name}: {_errors(validator, data)}"
