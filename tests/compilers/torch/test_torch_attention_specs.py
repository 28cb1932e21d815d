"""The transformer zoo specs compile to torch (at small sizes via --set), run forward and backward with
the inferred output shapes, and hold exactly graph.total_params parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nngraph.compilers.torch import build_module, load_spec

SPECS = Path(__file__).resolve().parents[3] / "specs"
SMALL = {
    "gpt2_small": ["layers=2", "vocab=64", "d_model=32", "heads=4", "ctx=16"],
    "llama_style": ["layers=2", "vocab=64", "d_model=32", "heads=4", "kv_heads=2"],
    "bert_encoder": ["layers=2", "vocab=64", "d_model=32", "heads=4", "ffn=64", "max_len=16"],
    "t5_encoder_decoder": ["layers=2", "vocab=64", "d_model=32", "heads=4", "d_kv=8", "d_ff=64"],
    "longformer": ["layers=2", "vocab=64", "d_model=32", "heads=4", "ffn=64", "max_len=16", "window=4"],
    "vit": ["layers=2", "size=16", "patch=4", "d_model=32", "heads=4", "mlp=64", "classes=5"],
}
SIZES = {"batch": 2, "seq": 10, "src": 9, "tgt": 6}


def _inputs(graph) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, gi in graph.inputs.items():
        shape = [SIZES[d] if isinstance(d, str) else d for d in gi.type.shape]
        if gi.type.dtype == "float32":
            out[name] = torch.randn(*shape, generator=g)
        elif "lengths" in name:
            out[name] = torch.tensor([SIZES["src" if "src" in name else "seq"], 3])  # one full, one padded
        else:
            out[name] = torch.randint(0, 2 if "type" in name else 64, shape, generator=g)
    return out


@pytest.mark.parametrize("spec", list(SMALL))
def test_zoo_spec_runs_forward_and_backward_with_exact_parameter_count(spec):
    graph = load_spec(SPECS / f"{spec}.yaml", SMALL[spec])
    model = build_module(graph, seed=0).train()
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    out = model(**_inputs(graph))
    outs = out if isinstance(out, dict) else {next(iter(graph.outputs)): out}
    for name, value in outs.items():
        want = graph.type_of(graph.outputs[name]).shape
        assert list(value.shape) == [SIZES.get(d, d) if isinstance(d, str) else d for d in want]
        assert torch.isfinite(value).all()
    sum(v.float().pow(2).mean() for v in outs.values()).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, unused


def test_full_size_gpt2_attention_layout_on_the_meta_device():
    graph = load_spec(SPECS / "gpt2_small.yaml")
    with torch.device("meta"):
        from nngraph.compilers.torch.ops.attention import Attention

        attn = Attention(768, 768, 12, 12, 64, qkv="fused", mask="causal")
    assert attn.qkv.weight.shape == (2304, 768) and graph.nodes["h.0.attn"].n_params == 2_362_368
    assert sum(p.numel() for p in attn.parameters()) == 2_362_368
