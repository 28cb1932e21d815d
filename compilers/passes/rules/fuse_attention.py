"""Fusion rule: attention written out of primitive ops -> one ``sdpa`` node on q, k, v (+ bias).

Pattern (anchored at the last matmul; names are the spec's ops)::

    s = matmul(q, k, transpose_b: true, scale: α)      or  matmul(q, kt) with kt = transpose(k, -2, -1)
                                                          (or a permute swapping the last two dims)
    s = scale(s, factor: β) ...                          zero or more
    s = add(s, bias)                                     optional: additive mask or bias (either side)
    p = softmax(s, dim: -1)
    p = dropout(p, p: r)                                 optional
    o = matmul(p, v)

Head reshapes/permutes around it stay as they are: the fused node works on the head-split
tensors q [..., T, d], k [..., S, d], v [..., S, d_v] (batch dims broadcast, as matmul's do).

Representation: an ``sdpa`` node — a back-end *core* op, not a spec op (it has no projection
weights, so it is not an ``attention`` node): inputs ``q``, ``k``, ``v``, optional ``bias``;
params ``scale`` (α·β), ``dropout`` (r), ``causal`` (false: a mask written in YAML arrives as the
bias tensor); it takes the last matmul's name, position and output type, so everything that read
the attention output still does; the covered nodes are removed. The lowering pass then chooses
its kernel like an attention node's (reference math or SDPA with the bias as its float mask).

Check (the reasons ``--explain``/the pass report when a match is declined): every intermediate
(scores, probabilities, the key transpose if it exists only for this matmul) is read by the next
step only and is not a graph output; softmax runs over the last (key) dim; the add has exactly
two inputs; the tensors are floating point with q/k head widths equal and a key length shared by
k and v.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nngraph.ir import Graph, Node, Ref

from ..rewrite import Edit, Match, Rule
from . import register


def _producer(graph: Graph, ref: Ref | None) -> Node | None:
    if ref is None or ref.node in graph.inputs:
        return None
    return graph.nodes.get(ref.node)


def _input(node: Node, i: int = 0) -> Ref | None:
    refs = list(node.all_refs())
    return refs[i] if i < len(refs) else None


def _is_last_two_swap(graph: Graph, node: Node) -> bool:
    t = graph.type_of(_input(node))
    if t is None:
        return False
    r = t.rank
    if node.op == "transpose":
        dims = {node.params["dim0"] % r, node.params["dim1"] % r}
        return dims == {r - 2, r - 1}
    if node.op == "permute":
        dims = [d % r for d in node.params["dims"]]
        return dims == list(range(r - 2)) + [r - 1, r - 2]
    return False


def _match(graph: Graph, node: Node) -> Match | None:
    """Walk back from ``o = matmul(p, v)``; None if the chain does not have the attention shape."""
    if node.op != "matmul" or node.params.get("transpose_b") or node.params.get("scale", 1.0) != 1.0:
        return None
    covers = [node.name]
    cur = _producer(graph, node.inputs.get("a"))
    dropout = 0.0
    if cur is not None and cur.op == "dropout":
        dropout, covers = float(cur.params["p"]), covers + [cur.name]
        cur = _producer(graph, _input(cur))
    if cur is None or cur.op != "softmax":
        return None
    softmax = cur
    covers.append(cur.name)
    cur = _producer(graph, _input(cur))
    bias: Ref | None = None
    if cur is not None and cur.op == "add":
        refs = list(cur.all_refs())
        scores_side = [r for r in refs if _leads_to_scores(graph, r)]
        if len(refs) != 2 or len(scores_side) != 1:
            return Match(node.name, tuple(covers + [cur.name]), {"problem": "the add before softmax must have two inputs: "
                                                                "the scores and one bias/mask tensor"})
        bias = next(r for r in refs if r is not scores_side[0])
        covers.append(cur.name)
        cur = _producer(graph, scores_side[0])
    scale = 1.0
    while cur is not None and cur.op == "scale":
        scale *= float(cur.params["factor"])
        covers.append(cur.name)
        cur = _producer(graph, _input(cur))
    if cur is None or cur.op != "matmul":
        return None
    scale *= float(cur.params.get("scale", 1.0))
    covers.append(cur.name)
    q, k = cur.inputs["a"], cur.inputs["b"]
    transpose_node = None
    if not cur.params.get("transpose_b"):
        kt = _producer(graph, k)
        if kt is None or not _is_last_two_swap(graph, kt):
            return None
        transpose_node, k = kt, _input(kt)
    return Match(node.name, tuple(covers), {
        "q": q, "k": k, "v": node.inputs["b"], "bias": bias, "scale": scale, "dropout": dropout,
        "softmax": softmax.name, "transpose": transpose_node.name if transpose_node else None})


def _leads_to_scores(graph: Graph, ref: Ref) -> bool:
    cur = _producer(graph, ref)
    while cur is not None and cur.op == "scale":
        cur = _producer(graph, _input(cur))
    return cur is not None and cur.op == "matmul" and (
        cur.params.get("transpose_b") or (_producer(graph, cur.inputs["b"]) is not None and
                                          _is_last_two_swap(graph, _producer(graph, cur.inputs["b"]))))


def _check(graph: Graph, match: Match, ctx: Any) -> str | None:
    c = match.captures
    if "problem" in c:
        return c["problem"]
    readers = graph.consumers()
    outputs = {r.node for r in graph.outputs.values()}
    for name in match.covers[1:]:
        if name in outputs:
            return f"'{name}' is a graph output, so the intermediate must stay"
        if len(readers.get(name, [])) != 1:
            return f"'{name}' is read by {len(readers.get(name, []))} nodes; the fused kernel would hide it"
    if c["transpose"] and (c["transpose"] in outputs or len(readers.get(c["transpose"], [])) != 1):
        pass  # the transpose stays for its other readers; k is its input either way
    soft = graph.nodes[c["softmax"]]
    st = graph.type_of(_input(soft))
    if st is not None and soft.params["dim"] % st.rank != st.rank - 1:
        return f"softmax runs over dim {soft.params['dim']}, not the key dim (-1)"
    q, k, v = (graph.type_of(c[n]) for n in ("q", "k", "v"))
    if q is None or k is None or v is None:
        return "q, k or v has no inferred type"
    if any(t.dtype not in ("float32", "float16", "bfloat16", "float64") for t in (q, k, v)):
        return "q, k and v must be floating point"
    if min(q.rank, k.rank, v.rank) < 2:
        return "q, k and v need at least two dims ([..., seq, head_dim])"
    return None


def _rewrite(graph: Graph, match: Match, ctx: Any) -> Edit:
    c = match.captures
    last = graph.nodes[match.node]
    inputs = {"q": c["q"], "k": c["k"], "v": c["v"], "bias": c["bias"]}
    fused = replace(last, op="sdpa", inputs=inputs, variadic=[],
                    params={"scale": c["scale"], "dropout": c["dropout"], "causal": False},
                    param_pos={}, input_pos={}, n_params=0, meta={**last.meta, "fused_from": list(match.covers)})
    removed = [n for n in match.covers if n != match.node]
    if c["transpose"]:
        readers = graph.consumers().get(c["transpose"], [])
        outputs = {r.node for r in graph.outputs.values()}
        if len(readers) == 1 and c["transpose"] not in outputs:
            removed.append(c["transpose"])
    replace_map: dict[str, Node | None] = {match.node: fused}
    replace_map.update({n: None for n in removed})
    bias = f" + bias {c['bias']}" if c["bias"] is not None else ""
    drop = f", dropout {c['dropout']}" if c["dropout"] else ""
    return Edit(replace_map, f"sdpa(q={c['q']}, k={c['k']}, v={c['v']}{bias}, scale={c['scale']:.6g}{drop})")


RULE = register(Rule("fuse_attention", __doc__.splitlines()[0], _match, _check, _rewrite, ops=("matmul",)))
