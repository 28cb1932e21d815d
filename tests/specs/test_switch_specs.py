"""specs/switch_style.yaml: parameter count against an equivalent torch.nn build (meta device) and its routing params."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from nngraph.spec import check_spec

SPEC = Path(__file__).resolve().parents[2] / "specs" / "switch_style.yaml"


def _load(overrides=None):
    graph, diag = check_spec(SPEC, overrides or [])
    assert not [d.message for d in diag]
    return graph


def _torch_switch(vocab: int, d: int, pairs: int, experts: int, d_ff: int, ctx: int) -> int:
    with torch.device("meta"):
        def attn():
            return [nn.Linear(d, d, bias=False) for _ in range(4)]

        def ffn():
            return [nn.Linear(d, d_ff, bias=False), nn.Linear(d_ff, d, bias=False)]

        mods = [nn.Embedding(vocab, d), nn.Embedding(ctx, d), nn.RMSNorm(d)]
        for _ in range(pairs):
            mods += [nn.RMSNorm(d), *attn(), nn.RMSNorm(d), *ffn()]  # dense layer
            mods += [nn.RMSNorm(d), *attn(), nn.RMSNorm(d), nn.Linear(d, experts, bias=False)]  # sparse layer + router
            mods += [m for _ in range(experts) for m in ffn()]
        return sum(p.numel() for m in mods for p in m.parameters())  # LM head tied to the embedding


def test_switch_style_matches_a_torch_switch_decoder():
    graph = _load()
    assert graph.total_params == _torch_switch(1024, 128, 2, 8, 512, 512) == 2_821_248
    moe = graph.nodes["layers.1.sparse.moe"]
    assert moe.params["top_k"] == 1 and moe.params["capacity_factor"] == 1.25
    assert moe.params["normalize_top_k"] is False and moe.params["expert"] == "ffn"
    assert moe.outputs["dropped_fraction"].shape == ()


def test_switch_style_scales_with_experts_only_in_the_sparse_layers():
    base, more = _load(), _load(["experts=16"])
    per_expert = 2 * 128 * 512 + 128  # two bias-free linears + one router row
    assert more.total_params - base.total_params == 2 * 8 * per_expert
