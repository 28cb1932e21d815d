"""The ${...} expression evaluator: what it computes and what it refuses."""

import pytest

from nngraph.expr import ExprError, evaluate, substitute

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
