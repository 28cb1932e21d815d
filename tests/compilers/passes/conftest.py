"""Fixtures for the pass tests: validated one-attention-node graphs per (mask, position) case."""

from __future__ import annotations

import pytest
from lowering_cases import MASK_CASES, POSITION_CASES, attention_spec

from nngraph import load_spec


@pytest.fixture(scope="session")
def attention_graphs(tmp_path_factory):
    """(mask case, position case) -> validated graph with one attention node named 'attn'."""
    root = tmp_path_factory.mktemp("attn_specs")
    cache: dict = {}

    def get(mask_case: str, position_case: str, **kw):
        key = (mask_case, position_case, tuple(sorted(kw.items())))
        if key not in cache:
            value, extra = MASK_CASES[mask_case]
            path = root / f"{mask_case}__{position_case}__{len(cache)}.yaml"
            path.write_text(attention_spec(value, POSITION_CASES[position_case], extra, **kw))
            cache[key] = load_spec(path)
        return cache[key]

    return get
