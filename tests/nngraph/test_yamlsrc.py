"""Safe YAML loading with positions; hostile documents are refused with a located error."""

import pytest

from nngraph.errors import SpecError
from nngraph.yamlsrc import Map, YamlLimits, load_yaml_text


def _error(text: str, limits: YamlLimits = YamlLimits()):
    with pytest.raises(SpecError) as info:
        load_yaml_text(text, "f.yaml", limits)
    return info.value.diagnostics[0]


def test_positions_of_keys_and_values_are_recorded():
    data = load_yaml_text("a: 1\nb:\n  c: [x, y]\n", "f.yaml")
    assert isinstance(data, Map)
    assert (data.pos_of_key("b").line, data.pos_of_key("b").col) == (2, 1)
    inner = data["b"]
    assert (inner.pos_of("c").line, inner.pos_of("c").col) == (3, 6)
    assert inner["c"].pos_of(1).col == 10


def test_duplicate_keys_are_an_error_at_the_second_key():
    d = _error("a: 1\nb: 2\na: 3\n")
    assert (d.pos.line, d.pos.col) == (3, 1)
    assert "duplicate key 'a'" in d.message and "f.yaml:1:1" in d.message


def test_merge_keys_may_be_overridden_without_a_duplicate_error():
    data = load_yaml_text("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 5\n", "f.yaml")
    assert data["d"] == {"x": 5, "y": 2}


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['echo hi']", "!!python/name:os.system", "!custom 3"])
def test_unsafe_and_custom_tags_are_refused(tag):
    d = _error(f"a: {tag}\n")
    assert "unsupported YAML tag" in d.message or "could not determine a constructor" in d.message
    assert d.pos.line == 1


def test_billion_laughs_alias_bomb_is_refused():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join(f"*{prev}" for _ in range(9)) + "]")
        prev = name
    d = _error("\n".join(lines) + "\n")
    assert "alias" in d.message


def test_alias_bomb_under_the_alias_cap_is_caught_by_the_expanded_size():
    text = "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    d = _error(text, YamlLimits(max_expanded_nodes=50))
    assert "expands to more than 50 nodes" in d.message


def test_deep_nesting_is_refused_without_recursion_error():
    d = _error("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nesting deeper than" in d.message


def test_huge_file_is_refused_before_parsing():
    d = _error("a: 1\n" * 100, YamlLimits(max_bytes=64))
    assert "larger than 64 bytes" in d.message


def test_syntax_error_points_at_the_line():
    d = _error("a: [1, 2\nb: 3\n")
    assert d.message.startswith("YAML syntax error") and d.pos.line >= 2


@pytest.mark.parametrize("text, value", [
    ("1e-6", 1e-6), ("1E5", 100000.0), ("2.5e3", 2500.0), ("1.0e-4", 1e-4), (".5e1", 5.0), ("-3e-2", -0.03),
    ("+1e2", 100.0), ("1.0e+3", 1000.0), ("0.5", 0.5), ("12", 12),
])
def test_yaml_1_2_numbers_are_numbers(text, value):
    # YAML 1.1 (PyYAML's resolver) wants a dot and a signed exponent: '1e-6' and '1E5' were strings
    got = load_yaml_text(f"a: {text}\nb: [{text}]", "f.yaml")
    assert got == {"a": value, "b": [value]} and type(got["a"]) is type(value)


@pytest.mark.parametrize("text", ['"1e-6"', "'1e5'", "1e", "e5", "1e-", "1.2.3e4", "0x1e5"])
def test_strings_that_only_look_like_exponents_stay_what_they_were(text):
    import yaml

    assert load_yaml_text(f"a: {text}", "f.yaml")["a"] == yaml.safe_load(f"a: {text}")["a"]


def test_pyyamls_own_loader_is_left_as_it_is():
    import yaml

    load_yaml_text("a: 1e-6", "f.yaml")
    assert yaml.safe_load("a: 1e-6") == {"a": "1e-6"}
