"""Torch graph layers: dense-adjacency formulas (GCN on Zachary's karate club, SAGE, GIN, GAT), parity with
torch_geometric's GCNConv/SAGEConv/GINConv/GATConv on copied weights (when torch_geometric is installed),
pooling, the generic message_passing op with blocks, run-time edge_index errors, and the zoo graph specs."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
import torch
import torch.nn.functional as F

from nngraph.compilers.torch import build_module, load_spec
from nngraph.compilers.torch.ops.graph_nn import global_pool, scatter, segment_softmax

ROOT = Path(__file__).resolve().parents[3]
GRAPH_IN = "x: {shape: [num_nodes, 5], dtype: float32}\nedge_index: {shape: [2, num_edges], dtype: int64}"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def karate() -> tuple[torch.Tensor, torch.Tensor]:
    """Zachary's karate club: (edge_index with both directions [2, 156], dense adjacency [34, 34])."""
    g = nx.karate_club_graph()
    und = torch.tensor(list(g.edges)).T
    ei = torch.cat([und, und.flip(0)], dim=1)
    adj = torch.zeros(34, 34)
    adj[ei[0], ei[1]] = 1.0
    return ei, adj


def random_graph(n: int = 9, e: int = 30, seed: int = 1, loops: bool = True) -> torch.Tensor:
    ei = torch.randint(0, n, (2, e), generator=_gen(seed))
    if not loops:
        ei = ei[:, ei[0] != ei[1]]
    return torch.unique(ei, dim=1)  # no duplicate edges, so a dense adjacency is an exact oracle


def dense(ei: torch.Tensor, n: int) -> torch.Tensor:
    """A[u, v] = 1 for an edge u -> v."""
    a = torch.zeros(n, n)
    a[ei[0], ei[1]] = 1.0
    return a


# ----- GCN ---------------------------------------------------------------------------
def test_gcn_on_karate_club_equals_the_dense_normalized_adjacency_formula(run_op):
    model, _ = run_op("{name: n, op: gcn_conv, in: [x, edge_index], out: 4}",
                      "x: {shape: [num_nodes, 34], dtype: float32}\nedge_index: {shape: [2, num_edges], dtype: int64}")
    ei, adj = karate()
    with torch.no_grad():
        model.n.bias.normal_(generator=_gen(2))
    x = torch.randn(34, 34, generator=_gen(3))
    a_hat = adj + torch.eye(34)
    d = a_hat.sum(1).pow(-0.5)
    want = (d[:, None] * a_hat * d[None, :]) @ x @ model.n.lin.weight.T + model.n.bias
    assert (model(x, ei) - want).abs().max().item() <= 1e-5


def test_gcn_weighted_edges_keep_existing_self_loops(run_op):
    model, _ = run_op("{name: n, op: gcn_conv, in: [x, edge_index, edge_weight], out: 3, improved: true}",
                      GRAPH_IN + "\nedge_weight: {shape: [num_edges], dtype: float32}")
    ei = random_graph(seed=4)
    w = torch.rand(ei.shape[1], generator=_gen(5)) + 0.5
    x = torch.randn(9, 5, generator=_gen(6))
    a = torch.zeros(9, 9)
    a[ei[0], ei[1]] = w
    diag = torch.where(torch.diagonal(a) > 0, torch.diagonal(a), torch.full((9,), 2.0))  # improved: missing loops get 2
    a = a - torch.diag(torch.diagonal(a)) + torch.diag(diag)
    deg = a.sum(0)  # in-degree at the target
    norm = deg.pow(-0.5)[:, None] * a * deg.pow(-0.5)[None, :]  # norm[u, v] scales the message u -> v
    want = norm.T @ (x @ model.n.lin.weight.T) + model.n.bias
    assert (model(x, ei, w) - want).abs().max().item() <= 1e-5


# ----- SAGE / GIN / GAT dense oracles ----------------------------------------------
@pytest.mark.parametrize("aggr", ["mean", "max", "sum"])
def test_sage_conv_equals_the_dense_aggregation_formula(run_op, aggr):
    model, _ = run_op(f"{{name: n, op: sage_conv, in: [x, edge_index], out: 4, aggr: {aggr}, normalize: true}}", GRAPH_IN)
    ei = random_graph(seed=7)
    x = torch.randn(9, 5, generator=_gen(8))
    a = dense(ei, 9)
    if aggr == "max":
        masked = torch.where(a.T[:, :, None] > 0, x[None, :, :], torch.tensor(float("-inf")))
        agg = masked.max(dim=1).values
        agg = torch.where(torch.isinf(agg), torch.zeros_like(agg), agg)
    else:
        agg = a.T @ x
        if aggr == "mean":
            agg = agg / a.sum(0).clamp(min=1)[:, None]
    want = F.normalize(agg @ model.n.lin_l.weight.T + model.n.lin_l.bias + x @ model.n.lin_r.weight.T, dim=-1)
    assert (model(x, ei) - want).abs().max().item() <= 1e-5


def test_gin_conv_equals_mlp_of_one_plus_eps_self_plus_neighbour_sum(run_op):
    model, _ = run_op("{name: n, op: gin_conv, in: [x, edge_index], hidden: 6, out: 3, eps: 0.25, train_eps: true}",
                      GRAPH_IN)
    ei = random_graph(seed=9)
    x = torch.randn(9, 5, generator=_gen(10))
    h = 1.25 * x + dense(ei, 9).T @ x
    mlp = model.n.nn
    want = mlp[2](torch.relu(mlp[0](h)))
    assert (model(x, ei) - want).abs().max().item() <= 1e-5
    assert isinstance(model.n.eps, torch.nn.Parameter) and model.n.eps.item() == 0.25


@pytest.mark.parametrize("concat", [True, False])
def test_gat_conv_equals_dense_masked_softmax_attention(run_op, concat):
    model, _ = run_op(f"{{name: n, op: gat_conv, in: [x, edge_index], out: 4, heads: 3, concat: {str(concat).lower()}}}",
                      GRAPH_IN)
    ei = random_graph(seed=11)  # includes self loops, which GAT replaces by its own
    x = torch.randn(9, 5, generator=_gen(12))
    with torch.no_grad():
        model.n.bias.normal_(generator=_gen(13))
    mask = dense(ei, 9).T.bool() | torch.eye(9, dtype=torch.bool)  # mask[v, u]: v attends to u
    h = (x @ model.n.lin.weight.T).view(9, 3, 4)
    a_src, a_dst = (h * model.n.att_src).sum(-1), (h * model.n.att_dst).sum(-1)  # [9, 3]
    scores = F.leaky_relu(a_dst[:, None, :] + a_src[None, :, :], 0.2)  # [v, u, head]
    alpha = torch.softmax(scores.masked_fill(~mask[:, :, None], float("-inf")), dim=1)
    out = torch.einsum("vuh,uhc->vhc", alpha, h)
    want = (out.reshape(9, 12) if concat else out.mean(1)) + model.n.bias
    assert (model(x, ei) - want).abs().max().item() <= 1e-5


def test_segment_softmax_sums_to_one_per_target_and_survives_large_scores():
    index = torch.tensor([0, 0, 1, 2, 2, 2])
    scores = torch.tensor([1000.0, 999.0, 5.0, -3.0, 0.0, 3.0])
    p = segment_softmax(scores, index, 4)
    assert torch.allclose(scatter(p, index, 4), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert torch.allclose(p[:2], torch.softmax(torch.tensor([1.0, 0.0]), 0))


# ----- torch_geometric parity --------------------------------------------------------
@pytest.fixture(scope="module")
def pyg():
    return pytest.importorskip("torch_geometric.nn")


def _parity(model, ref, *args):
    model.n.load_state_dict(ref.state_dict(), strict=True)  # same parameter names as torch_geometric
    model.eval(), ref.eval()
    return (model(*args) - ref(*args)).abs().max().item()


def test_gcn_conv_matches_torch_geometric(run_op, pyg):
    model, _ = run_op("{name: n, op: gcn_conv, in: [x, edge_index], out: 7}", GRAPH_IN)
    ref = pyg.GCNConv(5, 7)
    torch.nn.init.normal_(ref.bias)
    ei = random_graph(seed=14)
    assert _parity(model, ref, torch.randn(9, 5, generator=_gen(15)), ei) <= 1e-5


@pytest.mark.parametrize("aggr,project", [("mean", False), ("max", True)])
def test_sage_conv_matches_torch_geometric(run_op, pyg, aggr, project):
    model, _ = run_op(f"{{name: n, op: sage_conv, in: [x, edge_index], out: 6, aggr: {aggr}, "
                      f"project: {str(project).lower()}, normalize: true}}", GRAPH_IN)
    ref = pyg.SAGEConv(5, 6, aggr=aggr, project=project, normalize=True)
    assert _parity(model, ref, torch.randn(9, 5, generator=_gen(16)), random_graph(seed=17)) <= 1e-5


def test_gin_conv_matches_torch_geometric(run_op, pyg):
    model, _ = run_op("{name: n, op: gin_conv, in: [x, edge_index], hidden: 8, batch_norm: true, train_eps: true}",
                      GRAPH_IN)
    mlp = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
    ref = pyg.GINConv(mlp, eps=0.3, train_eps=True)
    assert _parity(model, ref, torch.randn(9, 5, generator=_gen(18)), random_graph(seed=19)) <= 1e-5


@pytest.mark.parametrize("concat", [True, False])
def test_gat_conv_with_edge_features_and_residual_matches_torch_geometric(run_op, pyg, concat):
    model, _ = run_op(f"{{name: n, op: gat_conv, in: [x, edge_index, edge_attr], out: 4, heads: 3, residual: true, "
                      f"concat: {str(concat).lower()}}}", GRAPH_IN + "\nedge_attr: {shape: [num_edges, 2], dtype: float32}")
    ref = pyg.GATConv(5, 4, heads=3, concat=concat, edge_dim=2, residual=True)
    torch.nn.init.normal_(ref.bias)
    ei = random_graph(seed=20)
    ea = torch.randn(ei.shape[1], 2, generator=_gen(21))
    assert _parity(model, ref, torch.randn(9, 5, generator=_gen(22)), ei, ea) <= 1e-5


# ----- pooling and generic message passing --------------------------------------------
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_global_pool_reduces_each_graph_separately(run_op, mode):
    model, _ = run_op(f"{{name: n, op: global_pool, in: [x, batch], mode: {mode}, num_graphs: 4}}",
                      "x: {shape: [num_nodes, 3], dtype: float32}\nbatch: {shape: [num_nodes], dtype: int64}")
    batch = torch.tensor([0, 0, 1, 1, 1, 3, 3])  # graph 2 has no nodes -> zeros
    x = torch.randn(7, 3, generator=_gen(23))
    reduce = {"sum": lambda t: t.sum(0), "mean": lambda t: t.mean(0), "max": lambda t: t.max(0).values}[mode]
    want = torch.stack([reduce(x[batch == g]) if (batch == g).any() else torch.zeros(3) for g in range(4)])
    assert torch.allclose(model(x, batch), want, atol=1e-6)
    assert torch.equal(global_pool(x, None, "sum"), x.sum(0, keepdim=True))


MP_SPEC = """nngraph: 1
name: t
inputs:
  x: {{shape: [num_nodes, 4], dtype: float32}}
  edge_index: {{shape: [2, num_edges], dtype: int64}}
  edge_attr: {{shape: [num_edges, 2], dtype: float32}}
blocks:
  edge_mlp:
    inputs: [h_u, h_v, e_uv]
    nodes:
      - {{name: cat, op: concat, in: [h_u, h_v, e_uv], dim: -1}}
      - {{name: fc, op: linear, in: cat, out: 6}}
      - {{name: act, op: tanh, in: fc}}
    outputs: [act]
  node_mlp:
    inputs: [h, aggr]
    nodes:
      - {{name: cat, op: concat, in: [h, aggr], dim: -1}}
      - {{name: fc, op: linear, in: cat, out: 3}}
    outputs: [fc]
graph:
  - {{name: mp, op: message_passing, in: [x, edge_index, edge_attr], message: edge_mlp, aggr: {aggr}, update: node_mlp}}
outputs: {{y: mp}}
"""


@pytest.mark.parametrize("aggr", ["sum", "mean", "max"])
def test_message_passing_runs_message_and_update_blocks(compile_text, aggr):
    graph, model = compile_text(MP_SPEC.format(aggr=aggr))
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == (10 * 6 + 6) + (10 * 3 + 3)
    assert [k for k in model.state_dict()] == ["mp.message.fc.weight", "mp.message.fc.bias",
                                               "mp.update.fc.weight", "mp.update.fc.bias"]
    ei = random_graph(n=6, e=14, seed=24)
    x, ea = torch.randn(6, 4, generator=_gen(25)), torch.randn(ei.shape[1], 2, generator=_gen(26))
    msg, upd = model.mp.message.fc, model.mp.update.fc
    rows = []
    for v in range(6):  # the oracle loops over nodes and their incoming edges
        ms = [torch.tanh(msg(torch.cat([x[u], x[v], ea[j]]))) for j, u in enumerate(ei[0].tolist()) if ei[1, j] == v]
        if not ms:
            agg = torch.zeros(6)
        else:
            st = torch.stack(ms)
            agg = {"sum": st.sum(0), "mean": st.mean(0), "max": st.max(0).values}[aggr]
        rows.append(upd(torch.cat([x[v], agg])))
    want = torch.stack(rows)
    out = model(x, ei, ea)
    assert (out - want).abs().max().item() <= 1e-5
    out.sum().backward()
    assert msg.weight.grad is not None and upd.weight.grad is not None


def test_message_block_reading_a_subset_of_inputs_and_no_update(compile_text):
    text = """nngraph: 1
name: t
inputs:
  x: {shape: [num_nodes, 4], dtype: float32}
  edge_index: {shape: [2, num_edges], dtype: int64}
blocks:
  src_only:
    inputs: [h_u]
    nodes:
      - {name: fc, op: linear, in: h_u, out: 2, bias: false}
    outputs: [fc]
graph:
  - {name: mp, op: message_passing, in: [x, edge_index], message: src_only, aggr: sum}
outputs: {y: mp}
"""
    _, model = compile_text(text)
    ei = random_graph(n=5, e=12, seed=27)
    x = torch.randn(5, 4, generator=_gen(28))
    want = dense(ei, 5).T @ (x @ model.mp.message.fc.weight.T)
    assert (model(x, ei) - want).abs().max().item() <= 1e-5


def test_out_of_range_edge_index_names_the_bad_id_and_the_spec_node(run_op):
    model, _ = run_op("{name: conv, op: gcn_conv, in: [x, edge_index], out: 2}", GRAPH_IN, "[conv]")
    bad = torch.tensor([[0, 1, 2], [1, 9, 0]])
    with pytest.raises(ValueError, match=r"edge_index\[1, 1\] = 9 is not a node: the target node of edge 1 must be in "
                                         r"0\.\.4 \(x has 5 nodes\)") as info:
        model(torch.randn(5, 5), bad)
    assert any("in node 'conv' (gcn_conv) at" in n and ":7:5" in n for n in info.value.__notes__)
    with pytest.raises(ValueError, match=r"edge_index\[0, 2\] = -1 is not a node"):
        model(torch.randn(5, 5), torch.tensor([[0, 1, -1], [1, 2, 0]]))


# ----- zoo ----------------------------------------------------------------------------------
def test_gcn_spec_on_karate_club_trains(tmp_path):
    graph = load_spec(ROOT / "specs" / "gcn.yaml")
    model = build_module(graph, seed=0)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params == 628
    ei, _ = karate()
    labels = torch.tensor([d["club"] == "Officer" for _, d in nx.karate_club_graph().nodes(data=True)]).long()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(model(torch.eye(34), ei), labels)
        loss.backward()
        opt.step()
    model.eval()
    assert (model(torch.eye(34), ei).argmax(1) == labels).float().mean() >= 0.9


@pytest.mark.parametrize("name", ["gat", "gin_graph"])
def test_graph_zoo_specs_run_forward_and_backward_with_the_ir_count(name):
    graph = load_spec(ROOT / "specs" / f"{name}.yaml")
    model = build_module(graph, seed=0)
    assert sum(p.numel() for p in model.parameters()) == graph.total_params
    n = 12
    ei = random_graph(n=n, e=40, seed=29)
    x = torch.randn(n, graph.inputs["x"].type.shape[1], generator=_gen(30))
    args = {"x": x, "edge_index": ei}
    if name == "gin_graph":
        args["batch"] = torch.tensor([0] * 5 + [1] * 4 + [2] * 3)
    out = model(**args)
    assert out.shape == ((3, 2) if name == "gin_graph" else (n, 7))
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_forward_check_feeds_global_pool_a_batch_vector_with_every_graph_id():
    from nngraph.compilers.torch.check import forward_check, random_inputs

    graph = load_spec(ROOT / "specs" / "gin_graph.yaml")
    assert random_inputs(graph, {"num_nodes": 7, "num_graphs": 3})["batch"].tolist() == [0, 0, 0, 1, 1, 2, 2]
    result = forward_check(build_module(graph), graph, {"num_nodes": 7, "num_graphs": 3})
    assert result.ok and result.outputs["logits"] == ((3, 2), (3, 2))
