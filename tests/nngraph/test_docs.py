"""The generated spec reference: complete, deterministic, and committed up to date."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from nngraph.docs import DOCS_COMMAND, example_yaml, param_default, param_range, param_type, spec_reference
from nngraph.registry import Param, families, get_op, p_enum, p_float, p_int, p_ints, p_ref

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "spec-reference.md"


def test_committed_reference_is_up_to_date():
    current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.is_file() else ""
    assert current == spec_reference(), f"docs/spec-reference.md is stale: run `{DOCS_COMMAND}`"


def test_generation_is_deterministic():
    assert spec_reference() == spec_reference()


def test_every_family_and_op_has_a_section():
    text = spec_reference()
    for fam, ops in families().items():
        assert f"\n## {fam}\n" in text
        for d in ops:
            assert f"\n### `{d.name}`\n" in text
    n = sum(len(v) for v in families().values())
    assert f"{n} primitives in {len(families())} families." in text


def test_every_example_is_valid_yaml_naming_its_op():
    text = spec_reference()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == sum(len(v) for v in families().values())
    for block in blocks:
        [node] = yaml.safe_load(block)
        assert node["name"] == node["op"] and get_op(node["op"]) is not None


def test_linear_section_shows_inputs_outputs_params_and_example():
    text = spec_reference()
    section = text.split("### `linear`\n", 1)[1].split("\n### ", 1)[0]
    assert "- **inputs:** `x`" in section
    assert "- **outputs:** `out` (refer to the node by its name)" in section
    assert "- **learnable parameters:** yes" in section
    assert "| `out` | int | **required** | ≥ 1 | output features |" in section
    assert "| `bias` | bool | `true` |  | add a learnable bias |" in section
    assert "```yaml\n- name: linear\n  op: linear\n  in: x\n  out: 10\n```" in section


def test_multi_output_op_names_the_example_outputs():
    section = spec_reference().split("### `split`\n", 1)[1].split("\n### ", 1)[0]
    assert "named by the parameters (for the example: `q`, `k`, `v`)" in section
    assert "  sizes: [64, 64, 64]" in section


def test_param_cells():
    assert (param_type(p_int("n")), param_default(p_int("n")), param_range(p_int("n"))) == ("int", "**required**", "≥ 1")
    p = p_float("rate", 0.1, min=0.0, max=1.0)
    assert (param_type(p), param_default(p), param_range(p)) == ("float", "`0.1`", "[0, 1]")
    p = p_enum("mode", ("mean", "sum"), "mean")
    assert (param_type(p), param_default(p), param_range(p)) == ("enum", "`mean`", "`mean`, `sum`")
    assert (param_type(p_ints("k", 3)), param_range(p_ints("k", 3))) == ("int or list of ints", "each ≥ 1")
    assert (param_type(p_ref("tie")), param_default(p_ref("tie"))) == ("node name", "—")
    custom = Param("custom", "names", None, schema={"type": "array", "items": {"type": "string"}})
    assert param_type(custom) == "list of strings"


def test_table_cells_escape_pipes():
    d = get_op("linear")
    assert d is not None
    odd = type(d)(name="odd", family="x", doc="Odd.", params={"p": p_int("a | b", 1)}, inputs=("x",), infer=d.infer)
    from nngraph.docs import op_section

    assert "| `p` | int | `1` | ≥ 1 | a \\| b |" in op_section(odd)
    assert example_yaml(odd) == "- name: odd\n  op: odd"


_GENERATE = """
import importlib, json, pkgutil, sys
import nngraph.ops as ops_pkg
names = sorted(m.name for m in pkgutil.iter_modules(ops_pkg.__path__) if not m.name.startswith("_"))
for name in (reversed(names) if sys.argv[1] == "reverse" else names):
    importlib.import_module("nngraph.ops." + name)
from nngraph.docs import spec_reference
from nngraph.schema import json_schema
print(json.dumps({"docs": spec_reference(), "schema": json.dumps(json_schema(), indent=2)}))
"""


def test_output_does_not_depend_on_the_order_op_modules_were_imported_in():
    """Tests (or user code) may import an op module before the registry loads the rest."""
    import json
    import subprocess
    import sys

    out = {}
    for order in ("forward", "reverse"):
        proc = subprocess.run([sys.executable, "-c", _GENERATE, order], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out[order] = json.loads(proc.stdout)
    assert out["forward"]["docs"] == out["reverse"]["docs"] == spec_reference()
    assert out["forward"]["schema"] == out["reverse"]["schema"]


def _custom(schema: dict) -> Param:
    return Param("custom", "doc", None, schema=schema)


def test_custom_parameter_types_and_ranges_come_from_their_schema():
    rate = _custom({"type": "number", "minimum": 0, "exclusiveMaximum": 1})
    assert (param_type(rate), param_range(rate)) == ("float", "[0, 1)")
    padding = _custom({"anyOf": [{"type": "integer", "minimum": 0},
                                 {"type": "array", "items": {"type": "integer", "minimum": 0}},
                                 {"enum": ["same", "valid"]}]})
    assert (param_type(padding), param_range(padding)) == ("int or list of ints or string", "≥ 0; each ≥ 0; `same`, `valid`")
    shape = _custom({"type": "array", "items": {"anyOf": [{"type": "integer", "minimum": -1}, {"type": "string"}]}})
    assert (param_type(shape), param_range(shape)) == ("list of (int or string)", "each ≥ -1")
    scale = _custom({"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "array", "items": {"type": "number"}}]})
    assert (param_type(scale), param_range(scale)) == ("float or list of floats", "> 0")
    mask = _custom({"anyOf": [{"enum": ["none", "causal"]},
                              {"type": "object", "properties": {"type": {"const": "none"}}},
                              {"type": "object", "properties": {"type": {"const": "window"}, "w": {"type": "integer"}}}]})
    assert (param_type(mask), param_range(mask)) == ("string or mapping", "`none`, `causal`; {type: `none` | `window`, ...}")


def test_indented_docstrings_are_dedented_so_markdown_does_not_show_code_blocks():
    from nngraph.docs import op_section

    d = get_op("linear")
    assert d is not None
    doc = "Summary line.\n\n    Formula y = x W.\n    More text."  # as OpDef stores an indented docstring
    odd = type(d)(name="odd", family="x", doc=doc, params={}, inputs=("x",), infer=d.infer)
    assert op_section(odd)[2] == "Summary line.\n\nFormula y = x W.\nMore text."
