"""`nngraph.inspect`: per-node shapes and parameter counts, block subtotals, text and JSON-ready output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nngraph.inspect import format_table, node_rows, summarize
from nngraph.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]

# in 8 -> first (linear 8->16) -> stack: 3 copies of (linear 16->16, relu) sharing weights
# -> split [4, 12] into a, b -> head (linear 4->2); outputs head and parts.b.
SHARED_SPEC = """
nngraph: 1
name: shared_demo
inputs:
  x: {shape: [batch, 8], dtype: float32}
blocks:
  ff:
    inputs: [x]
    params: {w: 16}
    nodes:
      - {name: fc, op: linear, in: x, out: "${w}"}
      - {name: act, op: relu, in: fc}
    outputs: [act]
graph:
  - {name: first, op: linear, in: x, out: 16}
  - {name: stack, block: ff, repeat: 3, share: true, in: first}
  - {name: parts, op: split, in: stack, sizes: [4, 12], names: [a, b]}
  - {name: head, op: linear, in: parts.a, out: 2}
outputs: {y: head, z: parts.b}
"""

# Independent arithmetic (torch.nn.Linear(i, o) has i*o + o parameters).
FIRST = 8 * 16 + 16      # 144
FC = 16 * 16 + 16        # 272, counted once: copies 1 and 2 share copy 0's weights
HEAD = 4 * 2 + 2         # 10
TOTAL = FIRST + FC + HEAD  # 426


def test_summary_lists_every_node_with_shapes_and_exact_param_counts(spec_file):
    s = summarize(load_spec(spec_file(SHARED_SPEC)))
    by_name = {n["name"]: n for n in s["nodes"]}
    assert list(by_name) == ["first", "stack.0.fc", "stack.0.act", "stack.1.fc", "stack.1.act",
                             "stack.2.fc", "stack.2.act", "parts", "head"]
    assert by_name["first"]["params"] == FIRST
    assert by_name["stack.0.fc"]["params"] == FC
    assert by_name["stack.1.fc"]["params"] == 0 and by_name["stack.1.fc"]["shares_params_with"] == "stack.0.fc"
    assert by_name["head"]["outputs"] == {"out": {"shape": ["batch", 2], "dtype": "float32"}}
    assert by_name["parts"]["outputs"] == {"a": {"shape": ["batch", 4], "dtype": "float32"},
                                           "b": {"shape": ["batch", 12], "dtype": "float32"}}
    assert by_name["head"]["inputs"] == ["parts.a"]
    assert by_name["stack.2.fc"]["scope"] == "stack.2" and by_name["stack.2.fc"]["block"] == "ff"
    assert s["total_params"] == TOTAL and s["n_nodes"] == 9


def test_summary_gives_block_use_subtotals_and_per_copy_counts(spec_file):
    s = summarize(load_spec(spec_file(SHARED_SPEC)))
    assert s["blocks"] == [{"name": "stack", "block": "ff", "repeat": 3, "shared": True, "nodes": 6,
                            "params": FC, "per_copy": {"stack.0": FC, "stack.1": 0, "stack.2": 0}}]


def test_summary_records_inputs_and_outputs_with_types(spec_file):
    s = summarize(load_spec(spec_file(SHARED_SPEC)))
    assert s["inputs"] == [{"name": "x", "shape": ["batch", 8], "dtype": "float32", "optional": False}]
    assert s["outputs"] == [{"name": "y", "ref": "head", "shape": ["batch", 2], "dtype": "float32"},
                            {"name": "z", "ref": "parts.b", "shape": ["batch", 12], "dtype": "float32"}]


def test_summary_is_json_serializable(spec_file):
    s = summarize(load_spec(spec_file(SHARED_SPEC)))
    assert json.loads(json.dumps(s)) == s


def test_rows_show_multi_output_types_and_shared_weights(spec_file):
    rows = {r[0]: r for r in node_rows(summarize(load_spec(spec_file(SHARED_SPEC))))}
    assert rows["parts"] == ("parts", "split", "a=float32[batch, 4], b=float32[batch, 12]", "0")
    assert rows["stack.1.fc"][3] == "0 (shared with stack.0.fc)"
    assert rows["first"] == ("first", "linear", "float32[batch, 16]", "144")


def test_text_table_has_totals_and_block_subtotals(spec_file):
    text = format_table(summarize(load_spec(spec_file(SHARED_SPEC))))
    lines = text.splitlines()
    assert lines[-1] == f"total: {TOTAL:,} parameters in 9 nodes"
    assert any(line.split() == ["first", "linear", "float32[batch,", "16]", "144"] for line in lines)
    assert any(line.split() == ["stack", "ff", "3", "(shared)", "272"] for line in lines)
    assert any(line.split() == ["stack.1", "0"] for line in lines)
    assert "  y = head: float32[batch, 2]" in lines


def test_mlp_zoo_spec_totals_match_hand_count():
    # 784-256-256-10 MLP: (784*256+256) + (256*256+256) + (256*10+10)
    s = summarize(load_spec(ROOT / "specs" / "mlp.yaml"))
    assert s["total_params"] == 200_960 + 65_792 + 2_570 == 269_322
    assert s["blocks"][0]["params"] == 200_960 + 65_792


def test_plain_table_needs_no_third_party_packages(tmp_path):
    """format_table works with rich (and every other optional package) made unimportable."""
    code = (
        "import sys\n"
        "for m in ('rich', 'networkx', 'typer', 'click'): sys.modules[m] = None\n"
        "from nngraph.inspect import format_table, summarize\n"
        "from nngraph.spec import load_spec\n"
        f"print(format_table(summarize(load_spec({str(ROOT / 'specs' / 'mlp.yaml')!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("total: 269,322 parameters in 5 nodes")


TIED = """
nngraph: 1
name: tied
inputs:
  tokens: {shape: [batch, seq], dtype: int64}
graph:
  - {name: emb, op: embedding, in: tokens, num: 100, dim: 16}
  - {name: head, op: linear, in: emb, out: 100, tie: emb, bias: false}
outputs: {logits: head}
"""


def test_weight_tie_shows_as_a_ref_with_zero_own_params(spec_file):
    s = summarize(load_spec(spec_file(TIED)))
    head = next(n for n in s["nodes"] if n["name"] == "head")
    assert head["refs"] == {"tie": "emb"} and head["params"] == 0
    assert s["total_params"] == 100 * 16  # nn.Embedding(100, 16); the tied head adds nothing
    rows = {r[0]: r for r in node_rows(s)}
    assert rows["head"] == ("head", "linear", "float32[batch, seq, 100]", "0 (tie: emb)")
