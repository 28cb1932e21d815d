"""Swin-T (specs/seeds/swin_t.yaml): shifted windows written in the spec (roll, reshape/permute into windows, region
ids from arange as the document mask, position window_bias) give HF SwinForImageClassification's logits with its
weights (small config, random weights) in torch (<= 1e-5); at full size the spec has Swin-T's published 28,288,354
parameters (equal to transformers' own model). ONNX Runtime parity at the same small sizes is the seed-zoo table's
"exported" check (scripts/seed_zoo_table.py: 6.6e-07 <= 1e-4), not repeated here (a 14 s export)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from nngraph import load_spec
from nngraph.compilers.torch import build_module

transformers = pytest.importorskip("transformers")

SPEC = Path(__file__).resolve().parents[2] / "specs" / "seeds" / "swin_t.yaml"
SMALL = ["size=32", "patch=2", "dim=8", "window=2", "d3=2", "h1=1", "h2=2", "h3=2", "h4=2", "classes=5"]
_BLOCK = {"attention.q_proj": "attention.q", "attention.k_proj": "attention.k", "attention.v_proj": "attention.v",
          "attention.o_proj": "attention.out", "mlp.fc1": "mlp.up", "mlp.fc2": "mlp.down",
          "attention.relative_position_bias.relative_position_bias_table": "attention.relative_position_bias_table"}
_TOP = {"swin.embeddings.patch_embeddings.projection": "projection", "swin.embeddings.norm": "embed_norm",
        "swin.layernorm": "final_norm", "classifier": "classifier"}


def _spec_key(key: str) -> str:
    """HF SwinForImageClassification key -> the spec's (blocks pair up as w / sw; stage and merge count from 1)."""
    if m := re.fullmatch(r"swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias|relative_position_bias_table)",
                         key):
        stage, block, part, leaf = int(m[1]) + 1, int(m[2]), m[3], m[4]
        part = _BLOCK.get(part if leaf != "relative_position_bias_table" else f"{part}.{leaf}", part)
        tail = part if leaf == "relative_position_bias_table" else f"{part}.{leaf}"
        return f"stage{stage}.blocks.{block // 2}.{'sw' if block % 2 else 'w'}.{tail}"
    if m := re.fullmatch(r"swin\.encoder\.layers\.(\d+)\.downsample\.(.+)", key):
        return f"merge{int(m[1]) + 1}.{m[2]}"
    prefix, _, leaf = key.rpartition(".")
    return f"{_TOP[prefix]}.{leaf}"


def test_swin_t_has_the_published_28_288_354_parameters():
    graph = load_spec(SPEC)
    with torch.device("meta"):
        hf = transformers.SwinForImageClassification(transformers.SwinConfig(num_labels=1000))
    assert graph.total_params == sum(p.numel() for p in hf.parameters()) == 28_288_354


@pytest.fixture(scope="module")
def pair():
    cfg = transformers.SwinConfig(image_size=32, patch_size=2, embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 2],
                                  window_size=2, num_labels=5, attn_implementation="eager")
    torch.manual_seed(0)
    hf = transformers.SwinForImageClassification(cfg).eval()
    with torch.no_grad():  # non-trivial norms, biases and bias tables (HF starts them at 1, 0 and 0)
        for name, p in hf.named_parameters():
            if not name.endswith("weight") or "norm" in name:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.1)
    graph = load_spec(SPEC, SMALL)
    model = build_module(graph, seed=0).eval()
    state = {_spec_key(k): v for k, v in hf.state_dict().items() if "relative_position_index" not in k}
    model.load_state_dict(state, strict=True)
    return graph, hf, model


def test_logits_match_swin_for_image_classification(pair):
    _, hf, model = pair
    image = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = hf(pixel_values=image).logits
        got = model(image)
    assert (got - want).abs().max().item() <= 1e-5

