"""Errors inside a block carry the chain of uses that made them (issue 16 item 3).

The error stays where the mistake is written (the node in the block's definition); its notes say which use,
with which ``with:`` values, made it wrong, innermost first.
"""

from __future__ import annotations

from nngraph.errors import format_github, format_text
from nngraph.spec import check_spec

SPEC = """\
nngraph: 1
name: unet
inputs:
  x: {shape: [batch, 16], dtype: float32}
blocks:
  conv:
    inputs: [x]
    params: {width: 16}
    nodes:
      - {name: fc, op: linear, in: x, out: "${width}"}
      - {name: res, op: add, in: [x, fc]}
    outputs: [res]
  down:
    inputs: [x]
    params: {width: 16}
    nodes:
      - {name: c1, block: conv, in: x, with: {width: "${width}"}}
    outputs: [c1]
graph:
  - {name: enc1, block: down, in: x}
  - {name: enc3, block: down, in: enc1, with: {width: WIDTH}}
outputs: [enc3]
"""


def _errors(spec_file, width: str):
    path = spec_file(SPEC.replace("WIDTH", width))
    _, diag = check_spec(path)
    return path, [d for d in diag if d.severity == "error"]


def test_a_shape_error_in_a_nested_block_names_every_use_with_its_parameters(spec_file):
    path, (d,) = _errors(spec_file, "8")
    assert (d.pos.line, d.pos.col) == (11, 9)  # the add in block conv
    assert d.message == "node 'enc3.c1.res' (add): shapes [batch, 16] and [batch, 8] do not broadcast (dim -1: 16 vs 8)"
    assert d.notes == (f"in block 'conv' ({path}:6:3), used as 'c1' at {path}:17:9 with width=8",
                       f"in block 'down' ({path}:13:3), used as 'enc3' at {path}:21:5 with width=8")


def test_an_expansion_error_in_a_block_names_the_use_too(spec_file):
    path, (d,) = _errors(spec_file, "0")
    assert (d.pos.line, d.message) == (10, "parameter 'out' of node 'fc' (linear): must be >= 1, got 0")
    assert d.notes == (f"in block 'conv' ({path}:6:3), used as 'c1' at {path}:17:9 with width=0",
                       f"in block 'down' ({path}:13:3), used as 'enc3' at {path}:21:5 with width=0")


def test_the_copy_of_a_repeat_is_named(spec_file):
    path = spec_file(SPEC.replace("  - {name: enc3, block: down, in: enc1, with: {width: WIDTH}}",
                                  "  - {name: enc3, block: down, in: enc1, repeat: 2, with: {width: 8}}"))
    _, diag = check_spec(path)
    (d,) = [d for d in diag if d.severity == "error"]
    assert d.notes[-1] == f"in block 'down' ({path}:13:3), used as 'enc3' (copy 0) at {path}:21:5 with width=8"


def test_errors_outside_blocks_have_no_notes(spec_file):
    path = spec_file(SPEC.replace("WIDTH", "16").replace("outputs: [enc3]", "outputs: [enc4]"))
    _, diag = check_spec(path)
    (d,) = list(diag)
    assert d.notes == ()


def test_the_notes_are_printed_in_every_format(spec_file):
    path, diags = _errors(spec_file, "8")
    text = format_text(diags)
    assert f"\n  note: in block 'conv' ({path}:6:3), used as 'c1' at {path}:17:9 with width=8\n" in text
    assert text.index("note: in block 'conv'") < text.index("note: in block 'down'") < text.index("hint:")
    assert f"(in block 'down' ({path}:13:3), used as 'enc3' at {path}:21:5 with width=8)" in format_github(diags)
    assert diags[0].to_dict()["notes"] == list(diags[0].notes)


def test_a_dangling_reference_in_a_block_names_the_use(spec_file):
    path = spec_file(SPEC.replace("WIDTH", "16").replace("in: [x, fc]}", "in: [x, fcc]}"))
    _, diag = check_spec(path)
    d, d3 = [d for d in diag if d.severity == "error"]  # the message names the node: one per use
    assert d.message == "unknown reference 'fcc' (in node 'enc1.c1.res')"
    assert d3.notes[-1] == f"in block 'down' ({path}:13:3), used as 'enc3' at {path}:21:5 with width=16"
    assert d.notes == (f"in block 'conv' ({path}:6:3), used as 'c1' at {path}:17:9 with width=16",
                       f"in block 'down' ({path}:13:3), used as 'enc1' at {path}:20:5")
