"""The ${...} expression evaluator: what it computes and what it refuses."""

import time

import pytest

from nngraph.expr import MAX_VALUE_SIZE, ExprError, evaluate, shown, substitute

VARS = {"d_model": 768, "heads": 12, "layers": 6, "flag": True}


@pytest.mark.parametrize("src, expected", [
    ("4 * d_model", 3072),
    ("d_model // heads", 64),
    ("d_model % heads == 0", True),
    ("max(layers, 8) - min(2, 3)", 6),
    ("1 if flag else 2", 1),
    ("2 ** 10", 1024),
    ("d_model / 2", 384.0),
    ("-heads + 1", -11),
    ("layers > 4 and heads < 16", True),
])
def test_arithmetic_comparisons_and_conditionals_evaluate(src, expected):
    assert evaluate(src, VARS) == expected


@pytest.mark.parametrize("src, fragment", [
    ("__import__('os').system('x')", "not allowed"),
    ("d_model.real", "Attribute"),
    ("open('/etc/passwd')", "not allowed"),
    ("[1][0]", "Subscript"),
    ("lambda: 1", "Lambda"),
    ("[x for x in (1, 2)]", "ListComp"),
    ("10 ** 10 ** 10", "exponent"),
    ("1 / 0", "division by zero"),
    ("unknown + 1", "unknown name 'unknown'"),
    ("max(1, key=2)", "keyword"),
    ("'a' * 10 ** 6", "repetition"),
])
def test_unsafe_or_invalid_expressions_are_refused(src, fragment):
    with pytest.raises(ExprError) as info:
        evaluate(src, VARS)
    assert fragment in str(info.value)


def test_huge_integer_results_are_refused():
    with pytest.raises(ExprError, match="too large"):
        evaluate("2 ** 500 * 2 ** 500", VARS)


def test_lone_expression_keeps_its_type_and_mixed_text_is_a_string():
    assert substitute("${d_model * 2}", VARS) == 1536
    assert substitute("h${heads}-x", VARS) == "h12-x"


def test_unknown_name_suggests_the_closest_var():
    with pytest.raises(ExprError) as info:
        evaluate("d_modle * 2", VARS)
    assert "did you mean 'd_model'" in info.value.hint


@pytest.mark.parametrize("src, message", [
    ("'%2000000000d' % 1", "formatted string too large"),
    ("'%.999999999f' % 1.5", "formatted string too large"),
    ("'a' * 4096 * 4096 * 4096", "sequence repetition too large"),
    ("[0] * 4096 * 4096", "sequence repetition too large"),
    ("[[0] * 1000] * 1000", "sequence repetition too large"),
    ("'x' * 99999 + 'yy'", "concatenation too large"),
])
def test_every_intermediate_is_capped_before_it_is_computed(src, message):
    start = time.process_time()
    with pytest.raises(ExprError) as info:
        evaluate(src, VARS)
    assert time.process_time() - start < 0.05
    assert str(info.value) == message
    assert f"over the limit of {MAX_VALUE_SIZE:,}" in info.value.hint


def test_the_predicted_size_is_in_the_hint():
    with pytest.raises(ExprError) as info:
        evaluate("'%2000000000d' % 1", VARS)
    assert info.value.hint.startswith("it would hold 2,000,000,012 characters")


def test_star_widths_and_huge_round_digits_are_refused():
    with pytest.raises(ExprError, match=r"'\*' widths in % formatting are not allowed"):
        evaluate("'%*d' % [5, 1]", VARS)
    with pytest.raises(ExprError, match=r"round\(\): ndigits -1000000000 out of range \(at most 400 either way\)"):
        evaluate("round(7, -10 ** 9)", VARS)


def test_values_at_the_cap_still_evaluate():
    assert len(evaluate(f"'ab' * {MAX_VALUE_SIZE // 2}", VARS)) == MAX_VALUE_SIZE
    assert evaluate("'%5d|' % 3", VARS) == "    3|"
    assert evaluate("'%.2f' % 1.0", VARS) == "1.00"
    assert evaluate("round(2.675, 2)", VARS) == 2.67


def test_mixed_text_is_capped_as_it_is_assembled():
    big = {"s": "x" * 60_000}
    with pytest.raises(ExprError, match="string of 120,000 characters is too large"):
        substitute("${s}${s}", big)
    assert substitute("<${s}>", big) == "<" + "x" * 60_000 + ">"


def test_shown_quotes_huge_values_cut():
    assert shown(list(range(10**6))).endswith("... (1,000,000 items)")
    assert len(shown(list(range(10**6)))) < 120
    assert shown("a" * 10**6) == "'" + "a" * 79 + "..."
    assert shown([1, 2]) == "[1, 2]"
