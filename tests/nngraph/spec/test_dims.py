"""Symbolic dims at validate: provably different -> located error, undecidable -> warning (error with --strict),
and the spec's ``dims:`` section (relations, min/max, multiple_of) deciding what sizes alone cannot."""

from __future__ import annotations

import subprocess
import sys

from nngraph.spec import check_spec


def _spec(body: str, inputs: str, dims: str = "") -> str:
    return f"nngraph: 1\nname: t\n{dims}inputs:\n{inputs}graph:\n{body}outputs: [out]\n"


def _diags(spec_file, text: str) -> tuple[list, list]:
    graph, diag = check_spec(spec_file(text))
    errors = [(d.pos.line, d.message) for d in diag if d.severity == "error"]
    warnings = [(d.pos.line, d.message, d.hint) for d in diag if d.severity == "warning"]
    return errors, warnings


CAUSAL = _spec("  - {name: conv, op: conv1d, in: x, out: 16, kernel: 3, padding: 2}\n"
               "  - {name: out, op: add, in: [x, conv]}\n", "  x: {shape: [batch, 16, time]}\n")


def test_a_forgotten_causal_crop_is_an_error_naming_both_expressions(spec_file):
    errors, warnings = _diags(spec_file, CAUSAL)
    assert errors == [(7, "node 'out' (add): shapes [batch, 16, time] and [batch, 16, time+2] do not broadcast "
                          "(dim -1: time vs time+2)")]
    assert warnings == []


def test_the_cropped_causal_conv_validates_without_warnings(spec_file):
    text = CAUSAL.replace("  - {name: out", "  - {name: crop, op: slice, in: conv, dim: 2, start: 0, end: -2}\n"
                                            "  - {name: out").replace("in: [x, conv]", "in: [x, crop]")
    assert _diags(spec_file, text) == ([], [])


UNET = _spec("  - {name: down, op: conv2d, in: x, out: 3, kernel: 3, stride: 2, padding: PAD}\n"
             "  - {name: up, op: upsample, in: down, scale_factor: 2}\n"
             "  - {name: out, op: concat, in: [x, up], dim: 1}\n", "  x: {shape: [batch, 3, height, height]}\n",
             "DIMS")


def test_unet_skip_concat_is_undecidable_without_a_divisor_and_then_a_warning(spec_file):
    errors, warnings = _diags(spec_file, UNET.replace("PAD", "1").replace("DIMS", ""))
    assert errors == []
    assert [(line, msg) for line, msg, _ in warnings] == [
        (8, "node 'out' (concat): cannot tell whether dims ((height+1)//2)*2 and height are equal (assumed equal)")]
    assert "dims: {" in warnings[0][2] and "validate --strict refuses this" in warnings[0][2]


def test_unet_skip_concat_of_even_sizes_is_proved_equal(spec_file):
    assert _diags(spec_file, UNET.replace("PAD", "1").replace("DIMS", "dims: {height: {multiple_of: 2}}\n")) == ([], [])


def test_unet_skip_concat_of_mismatched_sizes_is_an_error(spec_file):
    """Without padding the even input loses two rows: (h-3)//2+1 upsampled is h-2 when 2 | h."""
    errors, _ = _diags(spec_file, UNET.replace("PAD", "0").replace("DIMS", "dims: {height: {multiple_of: 2, min: 4}}\n"))
    assert errors == [(9, "node 'out' (concat): dim 2 differs: [batch, 3, height, height] vs "
                           "[batch, 3, ((height+1)//2)*2-2, ((height+1)//2)*2-2]")]


def test_two_batch_symbols_warn_and_a_relation_decides_them(spec_file):
    body = "  - {name: out, op: add, in: [x, y]}\n"
    inputs = "  x: {shape: [batch, 8]}\n  y: {shape: [seq, 8]}\n"
    errors, warnings = _diags(spec_file, _spec(body, inputs))
    assert errors == []
    assert [msg for _, msg, _ in warnings] == [
        "node 'out' (add): cannot tell whether dims batch and seq are equal (assumed equal)"]
    assert "dims: {seq: batch}" in warnings[0][2]
    assert _diags(spec_file, _spec(body, inputs, "dims: {seq: batch}\n")) == ([], [])


def test_key_padding_lengths_over_another_batch_symbol_warn(spec_file):
    body = "  - {name: out, op: attention, in: {x: x, lengths: n}, heads: 2, mask: key_padding}\n"
    inputs = "  x: {shape: [batch, seq, 8]}\n  n: {shape: [rows], dtype: int64}\n"
    _, warnings = _diags(spec_file, _spec(body, inputs))
    assert [msg for _, msg, _ in warnings] == [
        "node 'out' (attention): cannot tell whether dims batch and rows are equal (assumed equal)"]
    errors, _ = _diags(spec_file, _spec(body, inputs.replace("[rows]", "[3]"), "dims: {batch: {min: 4}}\n"))
    assert errors == [(8, "node 'out' (attention): batch dim of lengths: expected batch, got 3")]


def test_strict_validate_refuses_an_undecided_pair(spec_file):
    path = spec_file(_spec("  - {name: out, op: add, in: [x, y]}\n", "  x: {shape: [batch, 8]}\n  y: {shape: [seq, 8]}\n"))
    plain = subprocess.run([sys.executable, "-m", "nngraph", "validate", str(path)], capture_output=True, text=True)
    strict = subprocess.run([sys.executable, "-m", "nngraph", "validate", "--strict", str(path)],
                            capture_output=True, text=True)
    assert (plain.returncode, strict.returncode) == (0, 1)
    assert "cannot tell whether dims batch and seq are equal" in strict.stdout + strict.stderr


def test_a_dim_that_may_be_empty_asks_for_a_minimum(spec_file):
    body = "  - {name: out, op: conv1d, in: x, out: 4, kernel: 3}\n"
    inputs = "  x: {shape: [batch, 4, time]}\n"
    _, warnings = _diags(spec_file, _spec(body, inputs))
    assert [msg for _, msg, _ in warnings] == ["node 'out' (conv1d): dim time-2 is < 1 for small time (assumed >= 1)"]
    assert _diags(spec_file, _spec(body, inputs, "dims: {time: {min: 3}}\n")) == ([], [])


def test_shapes_are_shown_simplified(spec_file):
    body = ("  - {name: a, op: conv1d, in: x, out: 4, kernel: 3, padding: 2}\n"
            "  - {name: b, op: slice, in: a, dim: 2, start: 1, end: -1}\n"
            "  - {name: out, op: reshape, in: b, shape: [0, -1]}\n")
    graph, diag = check_spec(spec_file(_spec(body, "  x: {shape: [batch, 4, time]}\n")))
    assert [str(d) for d in graph.nodes["b"].out.shape] == ["batch", "4", "time"]  # time+2 cropped by 2
    assert [str(d) for d in graph.nodes["out"].out.shape] == ["batch", "time*4"]
    assert [d for d in diag] == []


def test_dims_section_errors_are_located(spec_file):
    inputs = "  x: {shape: [batch, 8]}\n"
    body = "  - {name: out, op: relu, in: x}\n"
    cases = {
        "dims: {batch: {min: 0}}\n": (3, "'min' of dims 'batch' must be a positive integer, got 0"),
        "dims: {batch: {mni: 2}}\n": (3, "unknown key 'mni' in dims 'batch'"),
        "dims: {batch: batch+1}\n": (3, "dims 'batch' is defined in terms of itself: batch+1"),
        "dims: {batch: 'seq +'}\n": (3, "dims 'batch' must be a dim expression (symbols, integers, + - * // % min max), "
                                        "got 'seq +'"),
        "dims: {a: b, b: a}\n": (3, "the relations under 'dims' form a cycle: a, b"),
    }
    for dims, want in cases.items():
        errors, _ = _diags(spec_file, _spec(body, inputs, dims))
        assert [(line, msg) for line, msg in errors] == [want], dims


def test_a_conv_over_zero_channels_is_refused_at_validate(spec_file):
    """Found by the differential test: torch builds the [out, 0, k, k] weight and fails only in forward. The
    input's zero dim is refused where it is declared (line 4), before the conv is reached."""
    errors, _ = _diags(spec_file, _spec("  - {name: out, op: conv2d, in: x, out: 4, kernel: 3}\n",
                                        "  x: {shape: [batch, 0, 8, 8]}\n"))
    assert errors == [(4, "dim 1 of input 'x' is 0: the input would always be empty")]
