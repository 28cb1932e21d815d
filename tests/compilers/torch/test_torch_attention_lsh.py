"""Reformer LSH attention compiled to torch against oracles computed directly in the test:

* one bucket-agnostic chunk covering the sequence = full shared-QK softmax attention with the self-mask;
* several buckets / hash rounds / chunks: each query's output = softmax attention over exactly the keys
  the LSH admits for it, with buckets, sort order and chunks recomputed here from the same rotations
  (a per-query loop in float64, no chunked tensors), rounds combined by their softmax mass.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nngraph.compilers.torch.ops.attention_lsh import random_rotations

D = 16
X = f"x: {{shape: [batch, seq, {D}], dtype: float32}}"


def _qkv(model, x):
    a = model.n
    h, d = a.heads, a.head_dim
    q = (x @ a.qk.weight.T + a.qk.bias).view(x.shape[0], x.shape[1], h, d).transpose(1, 2)
    v = (x @ a.v.weight.T + a.v.bias).view(x.shape[0], x.shape[1], h, d).transpose(1, 2)
    return q, v


def _finish(model, o):
    a = model.n
    b, h, t, d = o.shape
    return o.transpose(1, 2).reshape(b, t, h * d) @ a.out.weight.T + a.out.bias


def full_shared_qk_attention(q, v, causal=False):
    """softmax(q k̂ᵀ/√d) v with k̂ = q/‖q‖ and the query's own key at −1e5 (used only if alone)."""
    k = q / q.norm(dim=-1, keepdim=True)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    t = q.shape[2]
    eye = torch.eye(t, dtype=torch.bool)
    if causal:
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    scores = scores.masked_fill(eye, -1e5)
    return torch.softmax(scores, dim=-1) @ v


def lsh_oracle(q, v, rotations, chunk, same_bucket=True, causal=False):
    """Per query: the allowed key set of each round, recomputed from the rotations, then one softmax per round."""
    b_, h_, t, d = q.shape
    k = q / q.norm(dim=-1, keepdim=True)
    out = torch.zeros_like(q)
    for b in range(b_):
        for h in range(h_):
            outs, masses = [], []
            for r in range(rotations.shape[0]):
                proj = k[b, h] @ rotations[r, h].to(q.dtype)
                bucket = torch.cat([proj, -proj], -1).argmax(-1).tolist()
                order = sorted(range(t), key=lambda i: (bucket[i], i))        # sort by bucket, then position
                rank = {p: s for s, p in enumerate(order)}
                o_r, lse_r = torch.zeros(t, d, dtype=q.dtype), torch.zeros(t, dtype=q.dtype)
                for i in range(t):
                    ci = rank[i] // chunk
                    keys = [j for j in range(t) if ci - 1 <= rank[j] // chunk <= ci
                            and (not same_bucket or bucket[j] == bucket[i]) and (not causal or j <= i)]
                    s = torch.stack([q[b, h, i] @ k[b, h, j] / math.sqrt(d) if j != i
                                     else torch.tensor(-1e5, dtype=q.dtype) for j in keys])
                    o_r[i] = torch.softmax(s, 0) @ v[b, h, keys]
                    lse_r[i] = torch.logsumexp(s, 0)
                outs.append(o_r)
                masses.append(lse_r)
            w = torch.softmax(torch.stack(masses), dim=0)                       # [R, T]
            out[b, h] = (torch.stack(outs) * w[..., None]).sum(0)
    return out


def _run(run_op, params: str, x):
    model, graph = run_op(f"{{name: n, op: lsh_attention, in: x, heads: 2, {params}}}", X)
    model = model.double()
    with torch.no_grad():
        return model, graph, model(x)


@pytest.mark.parametrize("causal", [False, True])
def test_one_chunk_over_everything_is_full_shared_qk_attention_with_the_self_mask(run_op, causal):
    x = torch.randn(2, 11, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model, graph, got = _run(run_op, f"n_buckets: 4, chunk_size: 16, same_bucket: false, causal: {str(causal).lower()}", x)
    q, v = _qkv(model, x)
    want = _finish(model, full_shared_qk_attention(q, v, causal))
    assert (got - want).abs().max().item() <= 1e-10
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 3 * (D * D + D)


@pytest.mark.parametrize("params", [
    "n_buckets: 4, chunk_size: 4",
    "n_buckets: 8, chunk_size: 3, n_hashes: 3, seed: 5",
    "n_buckets: 4, chunk_size: 5, n_hashes: 2, causal: true",
    "n_buckets: 6, chunk_size: 4, same_bucket: false",
])
def test_each_query_attends_exactly_to_the_keys_its_lsh_buckets_and_chunks_admit(run_op, params):
    x = torch.randn(2, 13, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model, _, got = _run(run_op, params, x)
    a = model.n
    q, v = _qkv(model, x)
    want = _finish(model, lsh_oracle(q, v, a.rotations, a.chunk_size, a.same_bucket, a.causal))
    assert (got - want).abs().max().item() <= 1e-10
    full = _finish(model, full_shared_qk_attention(q, v, a.causal))
    assert (got - full).abs().max().item() > 1e-3  # the buckets and chunks really restrict the keys


def test_a_query_alone_in_its_bucket_attends_to_itself():
    from nngraph.compilers.torch.ops.attention_lsh import LSHAttention

    a = LSHAttention(4, 1, 4, n_buckets=2, chunk_size=4).double()
    q = torch.tensor([[[[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0.9, 0.1, 0, 0]]]], dtype=torch.float64)
    with torch.no_grad():
        a.rotations.copy_(torch.tensor([1.0, 0, 0, 0]).view(1, 1, 4, 1))  # bucket = sign of the first coordinate
    v = torch.arange(12, dtype=torch.float64).view(1, 1, 3, 4)
    o = a.attend(q, v)
    assert torch.equal(o[0, 0, 1], v[0, 0, 1])                               # alone in bucket 1: itself
    assert (o[0, 0, 0] - v[0, 0, 2]).abs().max() < 1e-12                      # bucket 0: the other key only
    assert (o[0, 0, 2] - v[0, 0, 0]).abs().max() < 1e-12


def test_rotations_are_a_seeded_buffer_not_state():
    assert torch.equal(random_rotations(2, 3, 8, 6, seed=4), random_rotations(2, 3, 8, 6, seed=4))
    assert not torch.equal(random_rotations(2, 3, 8, 6, seed=4), random_rotations(2, 3, 8, 6, seed=5))
    from nngraph.compilers.torch.ops.attention_lsh import LSHAttention

    a = LSHAttention(8, 2, 4, n_buckets=6, n_hashes=2, seed=4)
    assert a.rotations.shape == (2, 2, 4, 3) and "rotations" not in a.state_dict()


def test_gradients_reach_every_projection(run_op):
    model, _ = run_op("{name: n, op: lsh_attention, in: x, heads: 2, n_buckets: 4, chunk_size: 4, n_hashes: 2}", X)
    model(torch.randn(2, 9, D)).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
