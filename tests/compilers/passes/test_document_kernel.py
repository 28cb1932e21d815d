"""The document kernel (compilers/kernels/document.py): packed sequences computed one document run at a time.

Oracle: the reference attention in float64 with the same weights. For the document mask alone and AND-ed with
causal, and with a sliding window + key padding (rows whose keys are all padding attend uniformly, as in the
reference), for every position encoding (RoPE, ALiBi, T5 buckets, Shaw keys and values, none), the kernel's forward
and gradients (x and every parameter) agree within 1e-5 (gradients: of the largest one) at T = 130 with runs of
40/50/40 tokens, reversed in batch row 1 (so the runs of equal length come from two rows). Also: ids that are not
contiguous runs are computed densely (still exact); the planner picks the kernel at long lengths in both modes and
``--explain`` shows it; a single-run (one document) call equals plain causal attention."""

from __future__ import annotations

import copy

import pytest
import torch
from lowering_cases import POSITION_CASES

from nngraph.compilers.passes.lowering import decide
from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.ops.attention_kernels import LoweredAttention
from nngraph.compilers.torch.ops.attention_kernels_document import document_runs

T, B, D = 130, 2, 32
TOL = 1e-5
MASKS = {
    "document": ("document", ("doc_ids",)),
    "document_causal": ({"all": ["document", "causal"]}, ("doc_ids",)),
    "document_window_padding": ({"all": ["document", {"type": "sliding_window", "window": 8}, "key_padding"]},
                                ("doc_ids", "lengths")),
    "document_causal_positions": ({"all": ["document", "causal"]}, ("doc_ids", "positions")),
    "document_causal_padding": ({"all": ["document", "causal", "key_padding"]}, ("doc_ids", "lengths")),
}
TILE = 16  # queries per tile in the equivalence tests: runs of 40/50 tokens are 3-4 tiles, the last one partial
ONLY = {"document_causal_padding": ("none", "alibi")}  # window + padding already meets every position encoding
CASES = [(m, p) for m in MASKS for p in POSITION_CASES if not (m.endswith("positions") and p == "none")
         and p in ONLY.get(m, POSITION_CASES)]


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _graph(spec_file, mask_case, pos_case):
    from lowering_cases import attention_spec

    from nngraph import load_spec

    mask, extra = MASKS[mask_case]
    return load_spec(spec_file(attention_spec(mask, POSITION_CASES[pos_case], extra)))


def _inputs(extra, docs=None):
    docs = docs if docs is not None else torch.cat([torch.zeros(40), torch.ones(50), torch.full((T - 90,), 2.0)]).long()
    doc_ids = torch.stack([docs, docs.flip(0)])
    starts = torch.cat([torch.ones(B, 1, dtype=torch.bool), doc_ids[:, 1:] != doc_ids[:, :-1]], 1)
    first = torch.cummax(torch.where(starts, torch.arange(T), 0), 1).values  # each position's document start
    table = {"doc_ids": doc_ids, "lengths": torch.tensor([0, 70]), "positions": torch.arange(T) - first}
    return {k: table[k] for k in extra}


def _close(a, b, what, scale=1.0):
    err = (a.double() - b.double()).abs().max().item()
    assert err <= TOL * max(1.0, scale), f"{what}: max abs diff {err:.2e}"


def _check(ref, cfg, inputs):
    """The kernel of ``cfg`` equals the float64 reference: forward, d/dx and d/dparameters."""
    x, w = torch.randn(B, T, D, generator=_g(1)), torch.randn(B, T, D, generator=_g(2))
    oracle, xr = copy.deepcopy(ref).double(), x.double().requires_grad_()
    want = oracle(xr, **inputs)
    (want * w.double()).sum().backward()
    scale = max(g.abs().max().item() for g in [xr.grad] + [p.grad for p in oracle.parameters()])
    low = LoweredAttention.from_reference(copy.deepcopy(ref), {"tiers": [dict(cfg, min_kv=0)]})
    xl = x.clone().requires_grad_()
    got = low(xl, **inputs)
    assert low.last_kernel == "document"
    _close(got, want, "forward")
    (got * w).sum().backward()
    _close(xl.grad, xr.grad, "d/dx", scale)
    for (name, p), q in zip(oracle.named_parameters(), low.parameters()):
        _close(q.grad, p.grad, f"d/d{name}", scale)
    with torch.no_grad():
        _close(low(x, **inputs), want, "forward without autograd")


def _reference(graph):
    ref = build_module(graph, seed=0).attn
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=_g(0)) * 0.3)
    return ref


@pytest.mark.parametrize("mask_case, pos_case", CASES, ids=[f"{m}-{p}" for m, p in CASES])
def test_document_kernel_equals_the_float64_reference_forward_and_gradients(spec_file, mask_case, pos_case):
    graph = _graph(spec_file, mask_case, pos_case)
    d = decide(graph, graph.nodes["attn"], "cpu", "training", kv_len=T)
    cand = next(c for c in d.candidates if c.kernel == "document")
    assert cand.reason is None, cand.reason
    _check(_reference(graph), dict(cand.config, tile=TILE), _inputs(MASKS[mask_case][1]))


@pytest.mark.parametrize("pos_case", ["rope", "t5_bias"])
def test_a_packed_row_with_per_document_positions_gives_each_document_its_own_output(spec_file, pos_case):
    """Packing oracle: documents of 40/50/40 tokens in one row, positions restarting at 0 in each, give every document
    the output (and input gradient) it gets when run alone."""
    graph = _graph(spec_file, "document_causal_positions", pos_case)
    ref = _reference(graph)
    cfg = next(c.config for c in decide(graph, graph.nodes["attn"], "cpu", "training", kv_len=T).candidates
               if c.kernel == "document")
    low = LoweredAttention.from_reference(copy.deepcopy(ref), {"tiers": [dict(cfg, min_kv=0)]})
    inputs = _inputs(("doc_ids", "positions"))
    x = torch.randn(1, T, D, generator=_g(4), requires_grad=True)
    packed = low(x, doc_ids=inputs["doc_ids"][:1], positions=inputs["positions"][:1])
    packed.square().sum().backward()
    for lo, hi in [(0, 40), (40, 90), (90, T)]:
        xs = x.detach()[:, lo:hi].clone().requires_grad_()
        alone = ref(xs, doc_ids=torch.zeros(1, hi - lo, dtype=torch.long), positions=torch.arange(hi - lo)[None])
        alone.square().sum().backward()
        _close(packed[:, lo:hi], alone, f"document {lo}:{hi}")
        _close(x.grad[:, lo:hi], xs.grad, f"d/dx of document {lo}:{hi}", xs.grad.abs().max().item())


def test_ids_that_are_not_contiguous_runs_are_computed_densely_and_exactly(spec_file):
    docs = (torch.arange(T) // 7) % 3  # ids 0, 1, 2 recurring: a document is not one run
    assert document_runs(torch.stack([docs, docs])) is None
    assert document_runs(torch.tensor([[5, 5, 2, 2, 2], [1, 2, 3, 3, 3]])) == [(0, 0, 2), (0, 2, 3), (1, 0, 1),
                                                                                (1, 1, 1), (1, 2, 3)]
    graph = _graph(spec_file, "document_causal", "alibi")
    cfg = next(c.config for c in decide(graph, graph.nodes["attn"], "cpu", "training", kv_len=T).candidates
               if c.kernel == "document")
    _check(_reference(graph), cfg, _inputs(("doc_ids",), docs))


def test_one_document_is_plain_causal_attention(spec_file):
    graph = _graph(spec_file, "document_causal", "rope")
    ref = _reference(graph)
    cfg = next(c.config for c in decide(graph, graph.nodes["attn"], "cpu", "inference", kv_len=T).candidates
               if c.kernel == "document")
    low = LoweredAttention.from_reference(copy.deepcopy(ref), {"tiers": [dict(cfg, min_kv=0)]})
    x = torch.randn(B, T, D, generator=_g(3))
    with torch.no_grad():
        got = low(x, doc_ids=torch.zeros(B, T, dtype=torch.long))
    q, k, v, _ = ref.keys_values(x, None)
    k, v = ref.repeat_kv(k), ref.repeat_kv(v)
    p = torch.softmax((q @ k.transpose(-2, -1) * ref.scale).masked_fill(~torch.ones(T, T).tril().bool(), -torch.inf), -1)
    with torch.no_grad():
        _close(got, ref.out(ref.merge_heads(p @ v)), "one document")


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_the_planner_picks_the_document_kernel_for_packed_sequences_and_explains_it(spec_file, mode):
    graph = _graph(spec_file, "document_causal", "rope")
    d = decide(graph, graph.nodes["attn"], "cpu", mode, kv_len=4096)
    assert d.kernel == "document", [(c.kernel, c.reason, c.costs) for c in d.candidates]
    by = {c.kernel: c for c in d.candidates}
    assert by["document"].costs[4096] < by["sdpa"].costs[4096]
    nodoc = _graph(spec_file, "document_causal", "none")
    causal_only = decide(nodoc, nodoc.nodes["attn"], "cpu", mode, kv_len=4096)
    assert causal_only.kernel == "document"


def test_explain_shows_the_document_kernel(spec_file):
    from typer.testing import CliRunner

    from nngraph import cli

    path = spec_file("""
        nngraph: 1
        name: packed
        inputs:
          x: {shape: [batch, seq, 32], dtype: float32}
          doc_ids: {shape: [batch, seq], dtype: int64}
        graph:
          - {name: attn, op: attention, in: {x: x, doc_ids: doc_ids}, heads: 4, mask: {all: [document, causal]}}
        outputs: [attn]
    """)
    res = CliRunner().invoke(cli.app, ["compile", str(path), "--target", "cpu", "--mode", "training", "--explain"])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if line.startswith("attn "))
    assert "document for kv_len >= " in row, res.output
    verdict = next(line for line in res.output.splitlines() if line.strip().startswith("document "))
    assert "chosen (kv_len >= " in verdict, res.output


@pytest.mark.parametrize("mask, length, tile", [
    ("causal", 130, 16), ("causal", 512, 128), ({"type": "sliding_window", "window": 40}, 130, 16),
    ({"type": "sliding_window", "window": 9, "causal": False}, 50, 16),
    ({"all": ["causal", {"type": "sliding_window", "window": 33, "causal": False}]}, 100, 8)])
def test_each_query_tile_gets_exactly_the_key_chunks_its_mask_reaches(mask, length, tile):
    """Oracle: the dense predicate. A tile's key chunks are those holding a visible key of one of its queries —
    for causal masks none above the diagonal; for windows only the chunks the window touches."""
    from nngraph.attention.analysis import key_reach
    from nngraph.attention.masks import parse_mask
    from nngraph.compilers.torch.ops.attention_kernels_document_tiles import run_tiles
    from nngraph.compilers.torch.ops.attention_masks import dense_matrix

    vis = dense_matrix(mask, length)
    want = []
    for c in range(-(-length // tile)):
        cols = vis[c * tile:(c + 1) * tile].any(0).nonzero().view(-1)
        want.append((c, int(cols.min()) // tile, int(cols.max()) // tile + 1))
    assert run_tiles(length, tile, key_reach(parse_mask(mask))) == want


def test_tile_sizes_follow_the_run_length_and_the_window():
    from nngraph.compilers.torch.ops.attention_kernels_document_tiles import by_shape, run_tiles, tile_size

    tier = {"tile": 128, "tile_max": 512, "is_causal_from": 1024}
    assert tile_size(512, (None, 0), tier, True) == 128
    assert tile_size(4096, (None, 0), tier, False) == 512  # a score term: SDPA's mask path skips nothing itself
    assert tile_size(1024, (None, 0), tier, True) == 0  # SDPA's is_causal skips the upper key blocks itself
    assert tile_size(4096, (None, None), tier, False) == 0  # keys after the query visible: nothing to skip
    assert tile_size(128, (None, 0), tier, False) == 0  # one tile
    assert tile_size(4096, (511, 0), tier, False) == 256  # at most half the window
    shapes = by_shape(run_tiles(1024, 128, (255, 0)), 1024, 128)  # interior tiles of a window: one batched call
    assert {s: len(t) for s, t in shapes.items()} == {(128, 128): 1, (128, 256): 1, (128, 384): 6}


def test_a_long_causal_run_is_computed_in_tiles_that_skip_the_upper_blocks(spec_file, monkeypatch):
    """One document of 130 tokens (ALiBi: an additive mask, no is_causal) in tiles of 16: the calls are (16 queries,
    16·(c+1) keys) for chunk c and (2, 130) for the last: 0.56 of the 130² pairs; the output is the float64 reference's."""
    import nngraph.compilers.torch.ops.attention_kernels_document as doc

    graph = _graph(spec_file, "document_causal", "alibi")
    cfg = next(c.config for c in decide(graph, graph.nodes["attn"], "cpu", "training", kv_len=T).candidates
               if c.kernel == "document")
    shapes, attend = [], doc._attend
    monkeypatch.setattr(doc, "_attend", lambda call, qkv, *a, **kw: shapes.append(
        (qkv[0].shape[-2], qkv[1].shape[-2])) or attend(call, qkv, *a, **kw))
    _check(_reference(graph), dict(cfg, tile=TILE), {"doc_ids": torch.zeros(B, T, dtype=torch.long)})
    assert shapes[:9] == [(16, 16 * (c + 1)) for c in range(8)] + [(2, T)]
    assert sum(a * b for a, b in shapes[:9]) == 9476 < 0.57 * T * T


def test_runs_covering_every_row_are_one_is_causal_call_on_the_inputs_themselves(spec_file, monkeypatch):
    """One document per row, long enough for is_causal (``is_causal_from`` 1 here): the runs are q, k, v themselves
    (rows 0..B·T-1: no narrow, whose backward would zero-fill a full-size gradient), one SDPA is_causal call on
    [B, H, T, d]; forward and gradients equal the float64 reference."""
    import nngraph.compilers.torch.ops.attention_kernels_document as doc

    graph = _graph(spec_file, "document_causal", "rope")
    cfg = next(c.config for c in decide(graph, graph.nodes["attn"], "cpu", "training", kv_len=T).candidates
               if c.kernel == "document")
    calls, sdpa = [], doc._sdpa
    monkeypatch.setattr(doc, "_sdpa", lambda m, q, k, v, vis, term, causal: calls.append(
        (tuple(q.shape), causal)) or sdpa(m, q, k, v, vis, term, causal))
    flat = torch.randn(B * T, 4, D // 4)
    assert doc._rows(flat, torch.arange(B * T)) is flat
    _check(_reference(graph), dict(cfg, is_causal_from=1), {"doc_ids": torch.zeros(B, T, dtype=torch.long)})
    assert calls == [((B, 4, T, D // 4), True)] * 2  # with autograd, then without
