"""Attention mask registry: every predicate as a dense matrix against hand-written patterns from the
seed formulas, composition, tensor (FlexAttention-style) evaluation, the generated schema and checker.

Oracles: the formulas (causal M_ij = -inf for j > i, seed 002 "Masked Attention"; Longformer windows
and global tokens, Sparse Transformer local/strided, BigBird random, prefix-LM, document masks)
written out by hand as 0/1 rows; splitmix64's published first outputs for seed 0.
"""

from __future__ import annotations

import jsonschema
import pytest
import torch

from nngraph.attention import masks as m


def rows(*text: str) -> list[list[bool]]:
    return [[c == "1" for c in r] for r in text]


def dense(value, q_len, kv_len=None, **kw):
    return m.dense_mask(value, q_len, kv_len, **kw)


def test_none_allows_everything():
    assert dense("none", 3, 4) == rows("1111", "1111", "1111")


def test_causal_is_lower_triangular():
    assert dense("causal", 4) == rows("1000", "1100", "1110", "1111")


def test_causal_cross_shape_is_aligned_top_left():
    assert dense("causal", 3, 5) == rows("10000", "11000", "11100")


def test_key_padding_from_lengths_hides_keys_past_each_length():
    lengths = [3, 5]
    assert dense("key_padding", 2, 6, b=0, lengths=lengths) == rows("111000", "111000")
    assert dense("key_padding", 2, 6, b=1, lengths=lengths) == rows("111110", "111110")


def test_key_padding_bool_input_true_marks_padding():
    pad = [[False, False, True, True]]
    assert dense("key_padding", 2, 4, key_padding=pad) == rows("1100", "1100")


def test_causal_sliding_window_counts_the_query_itself():
    assert dense({"type": "sliding_window", "window": 3}, 6) == rows(
        "100000", "110000", "111000", "011100", "001110", "000111")


def test_symmetric_sliding_window_sees_half_the_window_each_side():
    assert dense({"type": "sliding_window", "window": 2, "causal": False}, 6) == rows(
        "110000", "111000", "011100", "001110", "000111", "000011")


def test_sparse_transformer_strided_parts_and_union():
    local = rows("10000000", "11000000", "11100000", "01110000", "00111000", "00011100", "00001110", "00000111")
    strided = rows("10000000", "01000000", "00100000", "10010000", "01001000", "00100100", "10010010", "01001001")
    both = [[a or b for a, b in zip(ra, rb)] for ra, rb in zip(local, strided)]
    assert dense({"type": "strided", "stride": 3, "part": "local"}, 8) == local
    assert dense({"type": "strided", "stride": 3, "part": "strided"}, 8) == strided
    assert dense({"type": "strided", "stride": 3}, 8) == both
    assert both[7] == rows("01001111")[0]


def test_non_causal_strided_is_symmetric():
    got = dense({"type": "strided", "stride": 2, "causal": False}, 5)
    # |i-j| < 2 or (i-j) even
    assert got == rows("11101", "11110", "11111", "01111", "10111")


def test_dilated_window_skips_every_other_key():
    assert dense({"type": "dilated", "window": 2, "dilation": 2}, 6) == rows(
        "100000", "010000", "101000", "010100", "001010", "000101")
    assert dense({"type": "dilated", "window": 2, "dilation": 2, "causal": False}, 5) == rows(
        "10100", "01010", "10101", "01010", "00101")


def test_global_tokens_alone_are_the_global_row_and_column():
    assert dense({"type": "global_tokens", "positions": [0, 3]}, 4) == rows("1111", "1001", "1001", "1111")


def test_longformer_window_plus_global_token():
    longformer = {"any": [{"type": "sliding_window", "window": 2, "causal": False},
                          {"type": "global_tokens", "positions": [0]}]}
    assert dense(longformer, 6) == rows("111111", "111000", "111100", "101110", "100111", "100011")


def test_document_mask_is_block_diagonal_per_batch_row():
    docs = [[0, 0, 1, 1, 1, 2], [0, 0, 0, 0, 0, 0]]
    assert dense("document", 6, doc_ids=docs) == rows(
        "110000", "110000", "001110", "001110", "001110", "000001")
    assert dense("document", 6, b=1, doc_ids=docs) == rows(*["111111"] * 6)


def test_document_and_causal_compose_with_all():
    docs = [[0, 0, 1, 1]]
    assert dense({"all": ["causal", "document"]}, 4, doc_ids=docs) == rows("1000", "1100", "0010", "0011")


def test_prefix_lm_is_bidirectional_in_the_prefix_and_causal_after():
    assert dense({"type": "prefix_lm", "prefix": 2}, 5) == rows("11000", "11000", "11100", "11110", "11111")


def test_not_removes_a_pattern():
    # causal minus the 2 most recent keys: j <= i - 2
    value = {"all": ["causal", {"not": {"type": "sliding_window", "window": 2}}]}
    assert dense(value, 5) == rows("00000", "00000", "10000", "11000", "11100")


def test_splitmix64_matches_the_reference_outputs_for_seed_0():
    state, out = 0, []
    for _ in range(3):
        state, v = m._splitmix64(state)
        out.append(v)
    assert out == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_random_mask_has_exactly_r_distinct_keys_per_row_reproducibly():
    value = {"type": "random", "per_row": 3, "seed": 7}
    got = dense(value, 10, 16)
    assert all(sum(r) == 3 for r in got)
    assert dense(value, 10, 16) == got
    assert dense(value, 10, 16, b=1, h=5) == got  # same for every batch row and head
    table = m.random_table(10, 16, 3, 7)
    assert [[j for j, v in enumerate(r) if v] for r in got] == table
    assert dense({"type": "random", "per_row": 3, "seed": 8}, 10, 16) != got
    assert dense({"type": "random", "per_row": 9}, 3, 4) == rows("1111", "1111", "1111")


def test_bigbird_combines_window_global_and_random():
    bigbird = {"any": [{"type": "sliding_window", "window": 2, "causal": False},
                       {"type": "global_tokens", "positions": [0]},
                       {"type": "random", "per_row": 1, "seed": 3}]}
    base = dense({"any": bigbird["any"][:2]}, 8)
    rand = dense(bigbird["any"][2], 8)
    assert dense(bigbird, 8) == [[a or b for a, b in zip(ra, rb)] for ra, rb in zip(base, rand)]


TENSOR_CASES = [
    "causal", {"type": "sliding_window", "window": 3}, {"type": "sliding_window", "window": 4, "causal": False},
    {"type": "strided", "stride": 3}, {"type": "dilated", "window": 3, "dilation": 2},
    {"type": "global_tokens", "positions": [0, 5]}, {"type": "prefix_lm", "prefix": 3},
    {"all": ["causal", {"not": {"type": "sliding_window", "window": 2}}]}, "key_padding", "document",
]


@pytest.mark.parametrize("value", TENSOR_CASES, ids=str)
def test_predicates_also_evaluate_on_index_tensors_like_flex_attention(value):
    t = 9
    lengths, docs = [4, 7], [[0, 0, 0, 1, 1, 2, 2, 2, 2], [0] * 9]
    fn = m.predicate(value)
    q, kv = torch.arange(t)[:, None], torch.arange(t)[None, :]
    for b in (0, 1):
        ctx = {"lengths": torch.tensor(lengths), "doc_ids": torch.tensor(docs), "q_len": t, "kv_len": t}
        got = torch.broadcast_to(fn(torch.tensor(b), torch.tensor(0), q, kv, **ctx), (t, t))
        assert got.tolist() == dense(value, t, b=b, lengths=lengths, doc_ids=docs)


def test_key_padding_bool_tensor_evaluates_like_the_python_lists():
    pad = [[False, False, True, True, True], [False, False, False, False, True]]
    fn = m.predicate("key_padding")
    q, kv = torch.arange(3)[:, None], torch.arange(5)[None, :]
    for b in (0, 1):
        got = torch.broadcast_to(fn(torch.tensor(b), torch.tensor(0), q, kv, key_padding=torch.tensor(pad)), (3, 5))
        assert got.tolist() == dense("key_padding", 3, 5, b=b, key_padding=pad)


def test_every_registered_mask_has_a_docstring_citing_the_seed():
    for name, mdef in m.MASKS.items():
        assert "seed 00" in mdef.doc, name


@pytest.mark.parametrize("value, path, words", [
    ("casual", "type", "did you mean 'causal'?"),
    ({"type": "causal", "window": 3}, "window", "takes no parameters"),
    ({"all": []}, "all", "non-empty list"),
    ({"any": ["causal"], "type": "causal"}, "", "has no other keys"),
    ({"not": {"type": "slidingwindow", "window": 2}}, "not.type", "did you mean 'sliding_window'?"),
    ({"window": 3}, "", "needs 'type'"),
    (5, "", "expected a mask name or mapping"),
    ("sliding_window", "", "needs parameter 'window'"),
    ({"type": "global_tokens", "positions": [-1]}, "positions", "must be >= 0"),
])
def test_checker_reports_each_problem_with_its_path(value, path, words):
    problems = m.check_mask(value)
    assert problems and problems[0][0] == path and words in problems[0][1], problems


def test_valid_forms_have_no_problems():
    for value in ["causal", {"type": "sliding_window", "window": 256},
                  {"any": [{"type": "sliding_window", "window": 64}, {"type": "global_tokens", "positions": [0]}]}]:
        assert m.check_mask(value) == []


def test_generated_schema_accepts_the_yaml_forms_and_rejects_typos():
    schema = m.mask_schema()
    for good in ["causal", {"type": "sliding_window", "window": 256},
                 {"any": [{"type": "sliding_window", "window": 64}, {"type": "global_tokens", "positions": [0]}]},
                 {"all": ["causal", {"not": "document"}]}]:
        jsonschema.validate(good, schema)
    for bad in ["casual", {"type": "sliding_window"}, {"type": "causal", "window": 2}, {"any": []}]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_a_newly_registered_mask_is_usable_from_yaml_at_once(diagnose):
    @m.register_mask("band_test", params={"width": m.p_int("half band width")})
    def band_test(b, h, q_idx, kv_idx, width):
        """Band |i-j| <= width (seed 002, "Global and Local Attention")."""
        return (q_idx - kv_idx <= width) & (kv_idx - q_idx <= width)

    try:
        assert dense({"type": "band_test", "width": 1}, 3) == rows("110", "111", "011")
        graph, errors = diagnose("""
            nngraph: 1
            name: t
            inputs: {x: {shape: [batch, seq, 8], dtype: float32}}
            graph:
              - {name: n, op: attention, in: x, heads: 2, mask: {all: [causal, {type: band_test, width: 4}]}}
            outputs: [n]
        """)
        assert not errors and graph.nodes["n"].out.shape == ("batch", "seq", 8)
    finally:
        m.MASKS.pop("band_test")
