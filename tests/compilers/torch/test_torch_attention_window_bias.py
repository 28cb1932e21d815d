"""Swin's window relative position bias (position ``window_bias``): one attention node over windows folded into
the batch, with the shifted-window mask given as region ids through the ``document`` mask, equals HF's
SwinAttention (its relative_position_bias_table and the cyclic-shift mask) to float32 rounding; the index equals
HF's relative_position_index; a sequence that is not one window is a located error."""

from __future__ import annotations

import pytest
import torch

from nngraph.attention.positions import window_relative_index

transformers = pytest.importorskip("transformers")
from transformers.models.swin import modeling_swin  # noqa: E402

C, HEADS, WIN = 12, 3, 4
N = WIN * WIN


def _region_ids(size: int, shift: int) -> torch.Tensor:
    """[windows, N] region id of every token of every window of a size x size map after a cyclic shift (HF's
    img_mask slices: 0..-WIN, -WIN..-shift, -shift.. per axis)."""
    label = torch.zeros(size, dtype=torch.long)
    label[size - WIN:] += 1
    label[size - shift:] += 1
    ids = label[:, None] * 3 + label[None, :]
    return ids.view(size // WIN, WIN, size // WIN, WIN).permute(0, 2, 1, 3).reshape(-1, N)


def test_index_equals_hf_relative_position_index():
    hf = modeling_swin.SwinRelativePositionBias(HEADS, (WIN, WIN))
    i, j = torch.arange(N).view(-1, 1), torch.arange(N).view(1, -1)
    assert torch.equal(window_relative_index(i, j, WIN, WIN).view(-1), hf.relative_position_index)


def test_shifted_window_attention_equals_hf_swin_attention(run_op):
    model, _ = run_op(f"{{name: n, op: attention, in: {{x: x, doc_ids: regions}}, heads: {HEADS}, mask: document, "
                      f"position: {{type: window_bias, window: {WIN}}}}}",
                      inputs=f"x: {{shape: [windows, {N}, {C}], dtype: float32}}\n"
                             f"regions: {{shape: [windows, {N}], dtype: int64}}")
    cfg = transformers.SwinConfig(embed_dim=C, attention_probs_dropout_prob=0.0, attn_implementation="eager")
    hf = modeling_swin.SwinAttention(cfg, C, HEADS, WIN).double().eval()
    m = model.n.double()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
        for ours, theirs in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("out", "o_proj")):
            getattr(m, ours).load_state_dict(getattr(hf, theirs).state_dict())
        m.relative_position_bias_table.copy_(hf.relative_position_bias.relative_position_bias_table)
        regions = _region_ids(8, 2).repeat(2, 1)  # batch 2 x 4 windows of an 8x8 map shifted by 2
        x = torch.randn(regions.shape[0], N, C, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        # HF's SW-MSA mask adds -100; -1e30 here so large random scores cannot leak through it (the node masks exactly)
        shift_mask = (regions[:4, :, None] != regions[:4, None, :]).double() * -1e30
        want = hf(x, shift_mask)[0]
        got = model(x, regions)
    assert (got - want).abs().max().item() <= 1e-6  # HF's eager softmax runs in float32 (measured 5.5e-7)
    assert (model(x, torch.zeros_like(regions)) - want).abs().max().item() > 1e-3  # the mask matters


def test_window_bias_needs_one_window_per_sequence(diagnose):
    text = ("nngraph: 1\nname: t\ninputs:\n  x: {shape: [batch, 20, 12], dtype: float32}\ngraph:\n"
            "  - {name: n, op: attention, in: x, heads: 3, position: {type: window_bias, window: 4}}\noutputs: [n]\n")
    _, errors = diagnose(text)
    assert len(errors) == 1 and errors[0][0] == 6
    assert "defined for sequences of exactly 16 tokens (one window), x has 20" in errors[0][2]


def test_flex_and_tile_forms_equal_the_dense_bias(run_op):
    model, _ = run_op(f"{{name: n, op: attention, in: x, heads: {HEADS}, position: {{type: window_bias, window: 2, "
                      f"width: 3}}}}", inputs=f"x: {{shape: [batch, 6, {C}], dtype: float32}}")
    m = model.n
    torch.nn.init.normal_(m.relative_position_bias_table)
    q = torch.zeros(1, HEADS, 6, C // HEADS)
    dense = m.score_bias(q, 6, 6, 0)[0]  # [H, 6, 6]
    h, i, j = torch.meshgrid(torch.arange(HEADS), torch.arange(6), torch.arange(6), indexing="ij")
    flex = m.hooks.score_mod(m, q, 0, 6, 6)(torch.zeros(()), 0, h, i, j)
    tiles, _ = m.hooks.tile_terms(m, q, torch.arange(6).view(-1, 1), torch.arange(6).view(1, -1))
    assert torch.equal(flex, dense) and torch.equal(tiles, dense)
    assert dense[0, 0, 5].item() == m.relative_position_bias_table[window_relative_index(0, 5, 2, 3), 0].item()


@pytest.mark.parametrize("kernel", ["decomposed", "onnx-attention"])
def test_onnx_export_matches_torch(spec_file, tmp_path, kernel):
    import numpy as np

    from nngraph import load_spec
    from nngraph.compilers.onnx.export import export_graph
    from nngraph.compilers.onnx.runner import make_session
    from nngraph.compilers.torch import build_module

    graph = load_spec(spec_file(f"nngraph: 1\nname: w\ninputs:\n  x: {{shape: [windows, {N}, {C}], dtype: float32}}\n"
                                f"  regions: {{shape: [windows, {N}], dtype: int64}}\ngraph:\n"
                                f"  - {{name: n, op: attention, in: {{x: x, doc_ids: regions}}, heads: {HEADS}, "
                                f"mask: document, position: {{type: window_bias, window: {WIN}}}}}\noutputs: {{y: n}}\n"))
    module = build_module(graph, seed=0).eval()
    torch.nn.init.normal_(module.n.relative_position_bias_table)
    path = tmp_path / "w.onnx"
    export_graph(graph, path, module=module, kernels={"*": kernel}, verify=False)
    regions = _region_ids(8, 2).repeat(3, 1)
    x = torch.randn(regions.shape[0], N, C, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = module(x, regions).numpy()
    got = make_session(path).run(None, {"x": x.numpy(), "regions": regions.numpy()})[0]
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())
