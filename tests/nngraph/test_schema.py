"""The JSON Schema for specs: a valid Draft 2020-12 schema, committed up to date, accepting the zoo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from nngraph.registry import registry
from nngraph.schema import json_schema
from nngraph.yamlsrc import load_yaml_file

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "nngraph.schema.json"
SPECS = sorted((ROOT / "specs").glob("**/*.yaml"))


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


@pytest.mark.parametrize("path", SPECS, ids=[str(p.relative_to(ROOT / "specs")) for p in SPECS])
def test_zoo_spec_validates_against_the_schema(path, validator):
    data = load_yaml_file(path)  # the tool's loader: PyYAML cannot read seeds' `inputs: [x, lengths?]`
    assert not _errors(validator, data)


def test_zoo_specs_point_editors_at_the_schema():
    for path in SPECS:
        up = "../" * len(path.relative_to(ROOT / "specs").parts)
        assert path.read_text(encoding="utf-8").splitlines()[0] == \
            f"# yaml-language-server: $schema={up}docs/nngraph.schema.json", path.name


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


def _best(validator: Draft202012Validator, data) -> tuple[str, str]:
    e = best_match(validator.iter_errors(data))
    return "/".join(map(str, e.absolute_path)), e.message


BASE = {"nngraph": 1, "inputs": {"x": {"shape": ["batch", 4]}}, "outputs": ["y"]}


def test_a_typod_op_is_reported_as_an_op_not_as_a_missing_block(validator):
    path, message = _best(validator, {**BASE, "graph": [{"name": "y", "op": "linearr", "in": "x", "out": 2}]})
    assert path == "graph/0/op" and message.startswith("'linearr' is not one of ['abs', 'act', ")
    node_schema = json_schema()["$defs"]["node"]
    assert node_schema["else"]["properties"]["op"]["errorMessage"].startswith("unknown op")  # yaml-language-server
    path, message = _best(validator, {**BASE, "graph": [{"name": "y", "op": "linear", "in": "x", "outt": 2}]})
    assert path == "graph/0"
    assert any("'outt' was unexpected" in e for e in _errors(validator, {**BASE, "graph": [
        {"name": "y", "op": "linear", "in": "x", "out": 2, "outt": 2}]}))


def test_train_keys_are_typed_from_the_train_key_registry(validator):
    graph = {**BASE, "graph": [{"name": "y", "op": "linear", "in": "x", "out": 2}]}
    assert not _errors(validator, {**graph, "train": {"optimizer": {"type": "adamw", "lr": 3e-4}, "steps": 10}})
    assert not _errors(validator, {**graph, "train": {"optimizer": "sgd", "data": "digits", "lora": False,
                                                      "batch_size": "${2 * 16}", "seed": None}})
    assert _best(validator, {**graph, "train": {"optimzer": "adam"}}) == \
        ("train", "Additional properties are not allowed ('optimzer' was unexpected)")
    assert any("'fp8' is not one of ['fp32', 'bf16', 'fp16']" in e
               for e in _errors(validator, {**graph, "train": {"precision": "fp8"}}))
    assert any("-1 is less than the minimum of 0.0" in e
               for e in _errors(validator, {**graph, "train": {"optimizer": {"lr": -1}}}))
    lr = json_schema()["properties"]["train"]["properties"]["optimizer"]["anyOf"][0]["properties"]["lr"]
    assert lr["description"] == "peak learning rate" and lr["default"] == 1e-3


def test_expressions_are_allowed_inside_lists_and_maps(validator):
    graph = [{"name": "y", "op": "avg_pool2d", "in": "x", "kernel": ["${2}", 2], "stride": [1, "${1}"]}]
    assert not _errors(validator, {**BASE, "graph": graph})
    graph = [{"name": "y", "op": "avg_pool2d", "in": "x", "kernel": ["two", 2]}]
    assert _errors(validator, {**BASE, "graph": graph})
    inputs = {"x": {"shape": ["batch", "${n}"], "dtype": "${dt}", "optional": "${opt}"}}  # the loader resolves them
    assert not _errors(validator, {**BASE, "inputs": inputs, "graph": graph[:0]})
    assert _errors(validator, {**BASE, "inputs": {"x": {"shape": ["batch"], "dtype": "float33"}}})
