"""Message passing ops: GCN, GraphSAGE, GIN, GAT, global pooling, generic message_passing.

Parameter oracles are torch modules laid out like torch_geometric 2.x's convs (built here, since
torch_geometric is not installed) and the published 2-layer Cora counts (GCN 23,063; GAT 92,373).
"""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

GRAPH_INPUTS = """\
nngraph: 1
name: t
inputs:
  x: {shape: [num_nodes, 34], dtype: float32}
  edge_index: {shape: [2, num_edges], dtype: int64}
  edge_attr: {shape: [num_edges, 3], dtype: float32}
  batch: {shape: [num_nodes], dtype: int64}
"""


def spec(body: str, outputs: str = "[n]", blocks: str = "") -> str:
    """Graph inputs + blocks + a ``graph:`` section (dedented) + outputs."""
    return GRAPH_INPUTS + blocks + textwrap.dedent(body).lstrip("\n") + f"outputs: {outputs}\n"


def pos(text: str, token: str, nth: int = 0) -> tuple[int, int]:
    """(line, col), 1-based, of the nth occurrence of ``token`` in ``text``."""
    hits = [(i + 1, line.index(token) + 1) for i, line in enumerate(text.splitlines()) if token in line]
    return hits[nth]


def n_params(module: nn.Module, *extra: torch.Tensor) -> int:
    return sum(p.numel() for p in module.parameters()) + sum(t.numel() for t in extra)


def one(diagnose, text: str):
    graph, errors = diagnose(text)
    assert errors == [], errors
    return graph.nodes["n"]


# ----- GCN ---------------------------------------------------------------
def test_gcn_conv_maps_nodes_to_out_features_with_torch_geometric_param_count(diagnose):
    node = one(diagnose, spec("""
        graph:
          - {name: n, op: gcn_conv, in: [x, edge_index], out: 16}
        """, "{y: n, e: edge_attr, b: batch}"))
    assert node.out.shape == ("num_nodes", 16)
    lin = nn.Linear(34, 16, bias=False)  # GCNConv.lin (no bias) + GCNConv.bias
    assert node.n_params == n_params(lin, torch.empty(16)) == 560


def test_gcn_without_bias_has_only_the_weight(diagnose):
    node = one(diagnose, spec("""
        graph:
          - {name: n, op: gcn_conv, in: [x, edge_index], out: 4, bias: false}
        """, "{y: n, e: edge_attr, b: batch}"))
    assert node.n_params == 34 * 4


def test_two_layer_gcn_on_cora_sizes_has_the_published_23063_parameters(diagnose):
    text = """\
    nngraph: 1
    name: cora
    inputs:
      x: {shape: [2708, 1433], dtype: float32}
      edge_index: {shape: [2, 10556], dtype: int64}
    graph:
      - {name: c1, op: gcn_conv, in: [x, edge_index], out: 16}
      - {name: a, op: relu, in: c1}
      - {name: c2, op: gcn_conv, in: [a, edge_index], out: 7}
    outputs: [c2]
    """
    graph, errors = diagnose(text)
    assert errors == []
    assert graph.total_params == 23063
    assert graph.nodes["c2"].out.shape == (2708, 7)


def test_gcn_edge_weight_must_have_one_value_per_edge(diagnose):
    text = spec("""
        graph:
          - {name: w, op: slice, in: edge_attr, dim: 1, start: 0, end: 1}
          - {name: n, op: gcn_conv, in: [x, edge_index, w], out: 4}
        """, "{y: n, b: batch}")
    _, errors = diagnose(text)
    assert len(errors) == 1
    assert errors[0][:2] == pos(text, "{name: n,")
    assert "edge_weight must be [num_edges], got [num_edges, 1]" in errors[0][2]


# ----- edge_index checks --------------------------------------------------
def test_float_edge_index_is_an_error_at_the_edge_index_reference(diagnose):
    text = spec("""
        graph:
          - {name: n, op: gcn_conv, in: [x, edge_index], out: 4}
        """, "{y: n, e: edge_attr, b: batch}").replace("num_edges], dtype: int64}", "num_edges], dtype: float32}")
    _, errors = diagnose(text)
    assert len(errors) == 1
    line, col, message, hint = errors[0]
    assert (line, col) == pos(text, "edge_index]")
    assert message == "node 'n' (gcn_conv): edge_index must be an int64 tensor of node ids, got float32"
    assert "dtype: int64" in hint


@pytest.mark.parametrize("shape", ["[num_edges, 2]", "[3, num_edges]", "[num_edges]"])
def test_edge_index_must_be_two_by_num_edges(diagnose, shape):
    text = spec("""
        graph:
          - {name: n, op: sage_conv, in: [x, edge_index], out: 4}
        """, "{y: n, e: edge_attr, b: batch}").replace("edge_index: {shape: [2, num_edges]", f"edge_index: {{shape: {shape}")
    _, errors = diagnose(text)
    assert len(errors) == 1
    line, col, message, _ = errors[0]
    assert (line, col) == pos(text, "edge_index]", 0)
    assert message == f"node 'n' (sage_conv): edge_index must have shape [2, num_edges], got {shape}"


def test_int32_edge_index_is_refused(diagnose):
    text = spec("""
        graph:
          - {name: n, op: gat_conv, in: [x, edge_index], out: 4}
        """, "{y: n, e: edge_attr, b: batch}").replace("num_edges], dtype: int64}", "num_edges], dtype: int32}")
    _, errors = diagnose(text)
    assert [e[2] for e in errors] == ["node 'n' (gat_conv): edge_index must be an int64 tensor of node ids, got int32"]


def test_node_features_must_be_a_float_matrix(diagnose):
    text = spec("""
        graph:
          - {name: n, op: gcn_conv, in: [batch, edge_index], out: 4}
        """, "{y: n, x: x, e: edge_attr}")
    _, errors = diagnose(text)
    assert len(errors) == 1
    assert errors[0][:2] == pos(text, "{name: n,")
    assert errors[0][2] == "node 'n' (gcn_conv): x must be node features [num_nodes, F], got [num_nodes]"


# ----- GraphSAGE ----------------------------------------------------------
@pytest.mark.parametrize("extra,modules", [
    ("", lambda: [nn.Linear(34, 8), nn.Linear(34, 8, bias=False)]),
    (", root_weight: false", lambda: [nn.Linear(34, 8)]),
    (", bias: false", lambda: [nn.Linear(34, 8, bias=False), nn.Linear(34, 8, bias=False)]),
    (", project: true", lambda: [nn.Linear(34, 34), nn.Linear(34, 8), nn.Linear(34, 8, bias=False)]),
])
def test_sage_conv_counts_lin_l_lin_r_and_projection_like_torch_geometric(diagnose, extra, modules):
    node = one(diagnose, spec(f"""
        graph:
          - {{name: n, op: sage_conv, in: [x, edge_index], out: 8{extra}}}
        """, "{y: n, e: edge_attr, b: batch}"))
    assert node.out.shape == ("num_nodes", 8)
    assert node.n_params == sum(n_params(m) for m in modules())


# ----- GIN ----------------------------------------------------------------
def test_gin_conv_builtin_mlp_matches_a_torch_sequential(diagnose):
    node = one(diagnose, spec("""
        graph:
          - {name: n, op: gin_conv, in: [x, edge_index], hidden: 32, out: 16, train_eps: true}
        """, "{y: n, e: edge_attr, b: batch}"))
    mlp = nn.Sequential(nn.Linear(34, 32), nn.ReLU(), nn.Linear(32, 16))
    assert node.out.shape == ("num_nodes", 16)
    assert node.n_params == n_params(mlp, torch.empty(1))  # + the learnable eps


def test_gin_conv_batch_norm_adds_its_affine_parameters(diagnose):
    node = one(diagnose, spec("""
        graph:
          - {name: n, op: gin_conv, in: [x, edge_index], hidden: 32, batch_norm: true}
        """, "{y: n, e: edge_attr, b: batch}"))
    mlp = nn.Sequential(nn.Linear(34, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32))
    assert node.out.shape == ("num_nodes", 32)
    assert node.n_params == n_params(mlp)


def test_gin_conv_nn_can_be_any_block(diagnose):
    node = one(diagnose, spec("""
        blocks:
          two_layer:
            inputs: [h]
            params: {width: 24}
            nodes:
              - {name: a, op: linear, in: h, out: "${width}"}
              - {name: r, op: relu, in: a}
              - {name: b, op: linear, in: r, out: 5}
            outputs: [b]
        graph:
          - {name: n, op: gin_conv, in: [x, edge_index], nn: {block: two_layer, with: {width: 12}}, train_eps: true}
        """, "{y: n, e: edge_attr, b: batch}"))
    assert node.out.shape == ("num_nodes", 5)
    assert node.n_params == n_params(nn.Sequential(nn.Linear(34, 12), nn.Linear(12, 5))) + 1
    assert node.params["nn"] == "two_layer"
    assert set(node.meta["subgraphs"]["nn"].nodes) == {"a", "r", "b"}


def test_gin_conv_needs_hidden_or_nn(diagnose):
    text = spec("""
        graph:
          - {name: n, op: gin_conv, in: [x, edge_index]}
        """, "{y: n, e: edge_attr, b: batch}")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "{name: n,"), "node 'n' (gin_conv): gin_conv needs either 'hidden' (built-in MLP) or 'nn' (a block)")]


# ----- GAT ----------------------------------------------------------------
def _gat_oracle(f: int, c: int, heads: int, concat: bool = True, edge_dim: int | None = None,
                residual: bool = False, bias: bool = True) -> int:
    total = heads * c if concat else c
    parts: list[nn.Module | torch.Tensor] = [nn.Linear(f, heads * c, bias=False),
                                             torch.empty(1, heads, c), torch.empty(1, heads, c)]
    if edge_dim:
        parts += [nn.Linear(edge_dim, heads * c, bias=False), torch.empty(1, heads, c)]
    if residual:
        parts.append(nn.Linear(f, total, bias=False))
    if bias:
        parts.append(torch.empty(total))
    return sum(n_params(p) if isinstance(p, nn.Module) else p.numel() for p in parts)


@pytest.mark.parametrize("params,edge,shape,oracle", [
    ("out: 8, heads: 4", False, 32, dict(heads=4)),
    ("out: 8, heads: 4, concat: false", False, 8, dict(heads=4, concat=False)),
    ("out: 8, heads: 2, residual: true", False, 16, dict(heads=2, residual=True)),
    ("out: 8, heads: 2, bias: false", True, 16, dict(heads=2, edge_dim=3, bias=False)),
])
def test_gat_conv_shapes_and_counts_match_the_torch_geometric_layout(diagnose, params, edge, shape, oracle):
    ins = "[x, edge_index, edge_attr]" if edge else "[x, edge_index]"
    outs = "{y: n, b: batch}" if edge else "{y: n, e: edge_attr, b: batch}"
    node = one(diagnose, spec(f"""
        graph:
          - {{name: n, op: gat_conv, in: {ins}, {params}}}
        """, outs))
    assert node.out.shape == ("num_nodes", shape)
    assert node.n_params == _gat_oracle(34, 8, **oracle)


def test_two_layer_gat_on_cora_sizes_has_the_published_92373_parameters(diagnose):
    text = """\
    nngraph: 1
    name: cora_gat
    inputs:
      x: {shape: [2708, 1433], dtype: float32}
      edge_index: {shape: [2, 10556], dtype: int64}
    graph:
      - {name: g1, op: gat_conv, in: [x, edge_index], out: 8, heads: 8, dropout: 0.6}
      - {name: a, op: elu, in: g1}
      - {name: g2, op: gat_conv, in: [a, edge_index], out: 7, heads: 1, concat: false}
    outputs: [g2]
    """
    graph, errors = diagnose(text)
    assert errors == []
    assert graph.total_params == 92373


def test_gat_edge_attr_rows_must_match_the_edges(diagnose):
    text = spec("""
        graph:
          - {name: n, op: gat_conv, in: [x, edge_index, x], out: 4}
        """, "{e: edge_attr, y: n, b: batch}").replace("x: {shape: [num_nodes, 34]", "x: {shape: [10, 34]").replace(
        "[2, num_edges]", "[2, 40]")
    _, errors = diagnose(text)
    assert len(errors) == 1
    assert errors[0][2] == "node 'n' (gat_conv): edge_attr rows must match the edges in edge_index: expected 40, got 10"


# ----- pooling -------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_global_pool_reduces_nodes_to_symbolic_graphs(diagnose, mode):
    node = one(diagnose, spec(f"""
        graph:
          - {{name: n, op: global_pool, in: [x, batch], mode: {mode}}}
        """, "{y: n, e: edge_attr, i: edge_index}"))
    assert node.out.shape == ("num_graphs", 34)
    assert node.n_params == 0


def test_global_pool_without_batch_is_one_graph_and_num_graphs_may_be_concrete(diagnose):
    graph, errors = diagnose(spec("""
        graph:
          - {name: n, op: global_pool, in: x}
          - {name: m, op: global_pool, in: [x, batch], num_graphs: 5}
        """, "{y: n, z: m, e: edge_attr, i: edge_index}"))
    assert errors == []
    assert graph.nodes["n"].out.shape == (1, 34)
    assert graph.nodes["m"].out.shape == (5, 34)


def test_global_pool_batch_must_be_integer_graph_ids(diagnose):
    text = spec("""
        graph:
          - {name: f, op: cast, in: batch, dtype: float32}
          - {name: n, op: global_pool, in: [x, f]}
        """, "{y: n, e: edge_attr, i: edge_index}")
    _, errors = diagnose(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [
        (*pos(text, "{name: n,"), "node 'n' (global_pool): batch must be an int64 vector of graph ids, got float32")]


# ----- generic message passing ---------------------------------------------
BLOCKS = """\
blocks:
  edge_mlp:
    inputs: [h_u, h_v, e_uv]
    params: {hidden: 16}
    nodes:
      - {name: cat, op: concat, in: [h_u, h_v, e_uv], dim: -1}
      - {name: fc, op: linear, in: cat, out: "${hidden}"}
      - {name: act, op: relu, in: fc}
    outputs: [act]
  src_only:
    inputs: [h_u]
    nodes:
      - {name: fc, op: linear, in: h_u, out: 6}
    outputs: [fc]
  node_mlp:
    inputs: [h, aggr]
    nodes:
      - {name: cat, op: concat, in: [h, aggr], dim: -1}
      - {name: fc, op: linear, in: cat, out: 8}
    outputs: [fc]
  layer:
    inputs: [h, ei]
    nodes:
      - {name: mp, op: message_passing, in: [h, ei], message: src_only}
      - {name: fc, op: linear, in: mp, out: 34}
    outputs: [fc]
"""


def test_message_passing_runs_message_and_update_blocks_and_counts_their_parameters(diagnose):
    node = one(diagnose, spec("""
        graph:
          - {name: n, op: message_passing, in: [x, edge_index, edge_attr], message: {block: edge_mlp, with: {hidden: 32}}, update: node_mlp, aggr: mean}
        """, "{y: n, b: batch}", BLOCKS))
    assert node.out.shape == ("num_nodes", 8)
    message = nn.Linear(34 + 34 + 3, 32)
    update = nn.Linear(34 + 32, 8)
    assert node.n_params == n_params(message) + n_params(update)
    sub = node.meta["subgraphs"]
    assert sub["message"].nodes["fc"].out.shape == ("num_edges", 32)
    assert sub["message"].inputs["h_u"].type.shape == ("num_edges", 34)
    assert sub["update"].inputs["aggr"].type.shape == ("num_nodes", 32)


def test_message_passing_without_update_returns_the_aggregated_messages(diagnose):
    node = one(diagnose, spec("""
        graph:
          - {name: n, op: message_passing, in: [x, edge_index], message: src_only, aggr: max}
        """, "{y: n, e: edge_attr, b: batch}", BLOCKS))
    assert node.out.shape == ("num_nodes", 6)
    assert node.n_params == 34 * 6 + 6


def test_message_passing_unknown_block_is_reported_at_the_parameter(diagnose):
    text = spec("""
        graph:
          - {name: n, op: message_passing, in: [x, edge_index], message: edge_mpl}
        """, "{y: n, e: edge_attr, b: batch}", BLOCKS)
    _, errors = diagnose(text)
    assert len(errors) == 1
    line, col, message, hint = errors[0]
    assert (line, col) == pos(text, "edge_mpl")
    assert message == "parameter 'message' of node 'n' (message_passing): unknown block 'edge_mpl'"
    assert "edge_mlp" in hint


def test_message_block_inputs_must_come_from_h_u_h_v_e_uv(diagnose):
    text = spec("""
        graph:
          - {name: n, op: message_passing, in: [x, edge_index], message: node_mlp}
        """, "{y: n, e: edge_attr, b: batch}", BLOCKS)
    _, errors = diagnose(text)
    assert len(errors) == 1
    line, col, message, _ = errors[0]
    assert (line, col) == pos(text, "node_mlp}")
    assert message == ("parameter 'message' of node 'n' (message_passing): block 'node_mlp' must take inputs "
                       "from (h_u, h_v, e_uv), got (h, aggr)")


def test_message_block_reading_e_uv_needs_edge_attr(diagnose):
    text = spec("""
        graph:
          - {name: n, op: message_passing, in: [x, edge_index], message: edge_mlp}
        """, "{y: n, e: edge_attr, b: batch}", BLOCKS)
    _, errors = diagnose(text)
    assert len(errors) == 1
    line, col, message, _ = errors[0]
    assert (line, col) == pos(text, "edge_mlp}")
    assert message == "node 'n' (message_passing): block 'edge_mlp' (message) reads 'e_uv', which this node does not provide"


def test_shape_error_inside_the_message_block_names_the_block_line(diagnose):
    text = spec("""
        blocks:
          bad:
            inputs: [h_u]
            nodes:
              - {name: fc, op: softmax, in: h_u, dim: 5}
            outputs: [fc]
        graph:
          - {name: n, op: message_passing, in: [x, edge_index], message: bad}
        """, "{y: n, e: edge_attr, b: batch}")
    _, errors = diagnose(text)
    assert len(errors) == 1
    line, col, message, _ = errors[0]
    assert (line, col) == pos(text, "bad}")
    inner_line, inner_col = pos(text, "5}")
    assert message.startswith(f"node 'n' (message_passing): in block 'bad' (message) at ")
    assert f"spec.yaml:{inner_line}:{inner_col}: node 'fc' (softmax): dim 5 is out of range for a rank-2 input" in message


def test_message_block_must_keep_one_row_per_edge(diagnose):
    text = spec("""
        blocks:
          pooled:
            inputs: [h_u]
            nodes:
              - {name: s, op: reduce, in: h_u, mode: sum, dim: 0, keepdim: true}
            outputs: [s]
        graph:
          - {name: n, op: message_passing, in: [x, edge_index], message: pooled}
        """, "{y: n, e: edge_attr, b: batch}")
    _, errors = diagnose(text)
    assert [e[2] for e in errors] == [
        "node 'n' (message_passing): the message block must return one row per edge [num_edges, M], got [1, 34]"]
    assert errors[0][:2] == pos(text, "pooled}")


def test_recursive_function_block_is_an_error(diagnose):
    text = spec("""
        blocks:
          loop:
            inputs: [h_u]
            nodes:
              - {name: inner, op: message_passing, in: [h_u, h_u], message: loop}
            outputs: [inner]
        graph:
          - {name: n, op: message_passing, in: [x, edge_index], message: loop}
        """, "{y: n, e: edge_attr, b: batch}")
    _, errors = diagnose(text)
    assert len(errors) == 1
    assert errors[0][:2] == pos(text, "loop}", 0)
    assert "recursive block: loop -> loop" in errors[0][2]


def test_function_blocks_inside_repeated_blocks_get_their_own_subgraphs(diagnose):
    graph, errors = diagnose(spec("""
        graph:
          - {name: n, block: layer, repeat: 2, in: [x, edge_index]}
        """, "{y: n, e: edge_attr, b: batch}", BLOCKS))
    assert errors == []
    a, b = graph.nodes["n.0.mp"], graph.nodes["n.1.mp"]
    assert a.meta["subgraphs"]["message"] is not b.meta["subgraphs"]["message"]
    assert a.n_params == b.n_params == 34 * 6 + 6


def test_unknown_block_parameter_under_with_is_reported_at_its_key(diagnose):
    text = spec("""
        graph:
          - {name: n, op: message_passing, in: [x, edge_index, edge_attr], message: {block: edge_mlp, with: {hiden: 3}}}
        """, "{y: n, b: batch}", BLOCKS)
    _, errors = diagnose(text)
    assert len(errors) == 1
    assert errors[0][:3] == (*pos(text, "hiden"), "block 'edge_mlp' has no parameter 'hiden'")


def test_block_param_mapping_needs_the_block_key(diagnose):
    text = spec("""
        graph:
          - {name: n, op: message_passing, in: [x, edge_index], message: {blok: src_only}}
        """, "{y: n, e: edge_attr, b: batch}", BLOCKS)
    _, errors = diagnose(text)
    assert len(errors) == 1
    assert errors[0][:3] == (*pos(text, "{blok"), "parameter 'message'.blok of node 'n' (message_passing): unknown key "
                                                  "'blok'; expected 'block' and optionally 'with'")


def test_function_blocks_are_closed_over_their_inputs(diagnose):
    text = spec("""
        blocks:
          peeks:
            inputs: [h_u]
            nodes:
              - {name: s, op: add, in: [h_u, x]}
            outputs: [s]
        graph:
          - {name: n, op: message_passing, in: [x, edge_index], message: peeks}
        """, "{y: n, e: edge_attr, b: batch}")
    _, errors = diagnose(text)
    assert len(errors) == 1
    assert errors[0][:2] == pos(text, "x]}", 0)
    assert errors[0][2] == "unknown reference 'x' (in node 's')"
