"""Attention masks on the torch path: the predicate evaluated on broadcast index tensors gives, for every
registered mask and combinators of them, exactly the matrix the same predicate gives on Python ints
(nngraph.attention.masks.dense_mask); and a compiled attention applies it (masked keys get weight 0)."""

from __future__ import annotations

import pytest
import torch

from nngraph.compilers.torch.ops.attention_masks import dense_matrix, mask_tensor
from nngraph.attention.masks import MASKS, dense_mask

LENGTHS = [5, 2, 7]
DOCS = [[0, 0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 1, 1, 2], [3, 3, 3, 3, 3, 3, 3]]
PADDING = [[False] * 5 + [True] * 2, [False, True, False, True, False, False, True], [False] * 7]

CASES = {
    "none": "none",
    "causal": "causal",
    "sliding_window": {"type": "sliding_window", "window": 3},
    "sliding_window_symmetric": {"type": "sliding_window", "window": 4, "causal": False},
    "strided": {"type": "strided", "stride": 3},
    "strided_local": {"type": "strided", "stride": 2, "part": "local", "causal": False},
    "strided_only": {"type": "strided", "stride": 3, "part": "strided", "causal": False},
    "dilated": {"type": "dilated", "window": 3, "dilation": 2},
    "dilated_symmetric": {"type": "dilated", "window": 4, "dilation": 2, "causal": False},
    "global_tokens": {"type": "global_tokens", "positions": [0, 4]},
    "random": {"type": "random", "per_row": 3, "seed": 11},
    "prefix_lm": {"type": "prefix_lm", "prefix": 3},
    "longformer": {"all": ["key_padding", {"any": [{"type": "sliding_window", "window": 2, "causal": False},
                                                   {"type": "global_tokens", "positions": [0]}]}]},
    "not_window": {"all": ["causal", {"not": {"type": "sliding_window", "window": 2}}]},
    "bigbird": {"any": [{"type": "random", "per_row": 2, "seed": 3}, {"type": "sliding_window", "window": 2}]},
}


def test_every_registered_mask_is_covered():
    leaves = set()

    def walk(v):
        if isinstance(v, str):
            leaves.add(v)
        elif "type" in v:
            leaves.add(v["type"])
        else:
            for child in (v.get("all") or v.get("any") or [v.get("not")]):
                walk(child)

    for value in CASES.values():
        walk(value)
    assert set(MASKS) - {"key_padding", "document"} <= leaves


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("q_len,kv_len", [(7, 7), (4, 7)])
def test_tensor_mask_equals_the_predicates_int_matrix(name, q_len, kv_len):
    value = CASES[name]
    for b in range(3):
        want = dense_mask(value, q_len, kv_len, b=b, lengths=LENGTHS)
        got = dense_matrix(value, q_len, kv_len, b=b, lengths=torch.tensor(LENGTHS))
        assert got.tolist() == want, name


@pytest.mark.parametrize("value", ["key_padding", {"all": ["causal", "key_padding"]}])
def test_key_padding_from_lengths_or_bool_padding_equals_the_int_matrix(value):
    for b in range(3):
        assert dense_matrix(value, 7, b=b, lengths=torch.tensor(LENGTHS)).tolist() == \
            dense_mask(value, 7, b=b, lengths=LENGTHS)
        assert dense_matrix(value, 7, b=b, key_padding=torch.tensor(PADDING)).tolist() == \
            dense_mask(value, 7, b=b, key_padding=PADDING)


def test_document_mask_from_doc_ids_equals_the_int_matrix():
    value = {"all": ["causal", "document"]}
    for b in range(3):
        got = dense_matrix(value, 7, b=b, doc_ids=torch.tensor(DOCS))
        assert got.tolist() == dense_mask(value, 7, b=b, doc_ids=DOCS)
    assert dense_matrix("document", 7, b=0, doc_ids=torch.tensor(DOCS))[:3, :3].all()


@pytest.mark.parametrize("name", ["causal", "sliding_window", "random", "prefix_lm", "strided"])
def test_offset_queries_are_the_last_rows_of_the_full_matrix(name):
    """With a KV cache the T new queries are positions offset..offset+T-1 against all S keys."""
    full = dense_mask(CASES[name], 9, 9)
    got = mask_tensor(CASES[name], 1, 2, 9, offset=7)
    assert got.expand(1, 1, 2, 9)[0, 0].tolist() == full[7:]


def test_mask_shape_broadcasts_to_batch_heads_queries_keys():
    assert mask_tensor("causal", 3, 4, 5).shape == (1, 1, 4, 5)
    assert mask_tensor("key_padding", 3, 4, 5, lengths=torch.tensor([1, 2, 3])).shape == (3, 1, 1, 5)
    assert mask_tensor("none", 3, 4, 5) is None


def test_compiled_attention_gives_masked_keys_zero_weight(compile_text):
    _, model = compile_text("""
        nngraph: 1
        name: t
        inputs:
          x: {shape: [batch, seq, 8], dtype: float32}
        graph:
          - {name: attn, op: attention, in: x, heads: 2, mask: {type: sliding_window, window: 2}}
        outputs: [attn]
        """)
    x = torch.randn(1, 6, 8)
    base = model(x)
    changed = x.clone()
    changed[:, 2] += 10.0  # key 2 is visible only to queries 2 and 3
    diff = (model(changed) - base).abs().amax(-1)[0]
    assert diff[[0, 1, 4, 5]].max() < 1e-6 and diff[[2, 3]].min() > 1e-3


def test_compiled_document_mask_keeps_packed_documents_apart(compile_text):
    _, model = compile_text("""
        nngraph: 1
        name: t
        inputs:
          x: {shape: [batch, seq, 8], dtype: float32}
          docs: {shape: [batch, seq], dtype: int64}
        graph:
          - {name: attn, op: attention, in: {x: x, doc_ids: docs}, heads: 2, mask: {all: [causal, document]}}
        outputs: [attn]
        """)
    x, docs = torch.randn(1, 7, 8), torch.tensor([DOCS[0]])  # documents 0..2 | 3..4 | 5..6
    assert "attn = self.attn(x, doc_ids=docs)" in model.source
    changed = x.clone()
    changed[:, 3:5] += 5.0  # edit document 1 only
    diff = (model(changed, docs) - model(x, docs)).abs().amax(-1)[0]
    assert diff[[0, 1, 2, 5, 6]].max() < 1e-6 and diff[[3, 4]].min() > 1e-3
