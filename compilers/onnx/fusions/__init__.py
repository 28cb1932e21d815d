"""ONNX-level fusions for ONNX Runtime targets: pattern, check, rewrite on the exported graph (one module per fusion).

Which run by default depends on the target device (:data:`DEFAULT_FUSIONS`: measured on ORT CPU, most
of them are slower there than the ops they replace).

The torch-side passes (compilers/passes/rules/) rewrite the nngraph IR; these rules rewrite the
*exported* ONNX graph, where the subgraphs ORT has single fused contrib kernels for are visible:

* :mod:`.skip_layer_norm` -- ``LayerNormalization(Add(x, Add(MatMul(..), bias)))`` (the residual
  add of a post- or pre-LN block, the projection's bias folded in) ->
  ``com.microsoft.SkipLayerNormalization`` (one pass over the activations instead of three);
* :mod:`.bias_gelu` -- ``Gelu(Add(h, bias))`` -> ``com.microsoft.BiasGelu`` (exact erf GELU) or
  ``com.microsoft.FastGelu`` with its bias input (tanh approximation);
* :mod:`.mha_bias` -- the q/k/v projection bias adds -> ``MultiHeadAttention``'s ``bias`` input;
* :mod:`.packed_qkv` (opt-in) -- three ``MatMul(x, W) + b``
  projections of one input feeding a ``com.microsoft.MultiHeadAttention`` ->
  ``com.microsoft.Attention`` with one packed [D, 3D] weight and [3D] bias (the op's own QKV path,
  what ORT's transformers optimizer emits for BERT).

A :class:`Fusion` is ``match(index, node) -> Match | None`` (structural), ``check(index, match) ->
reason | None`` (shapes, constants, single use) and ``rewrite(index, match) -> Rewrite`` (new nodes and
initializers; it does not mutate). :func:`apply_fusions` runs each fusion over the whole graph in
turn (re-indexing in between), removes the covered nodes, adds the replacements and re-sorts the
graph topologically. Shapes come from ORT's symbolic shape inference (it knows the contrib ops),
run on a copy. The export verifies the fused file against torch like any other.
"""

from __future__ import annotations

from typing import Any

import onnx

from .base import MS, Fusion, Index, Match, Rewrite, apply_fusion, attr, infer_shapes, same_shape, toposort

__all__ = ['MS', 'Match', 'Rewrite', 'Fusion', 'Index', 'infer_shapes', 'same_shape', 'attr', 'toposort', 'apply_fusion', "DEFAULT_FUSIONS", "FUSION_NAMES",
           "apply_fusions", "default_fusions", "describe", "fuse_export", "fusions", "requested"]


def fusions() -> list[Fusion]:
    """Every fusion, in the order they run (skip-layer-norm first: it takes the projections' bias adds)."""
    from . import bias_gelu, mha_bias, packed_qkv, skip_layer_norm

    return [skip_layer_norm.FUSION, bias_gelu.FUSION, packed_qkv.FUSION, mha_bias.FUSION]


FUSION_NAMES = ("skip_layer_norm", "bias_gelu", "packed_qkv", "mha_bias")
#: what an ORT export runs by default, per device. Measured on ORT 1.31 CPU (bench/onnx_latency.py and per-op
#: profiles, BERT shape, 2 threads, alternating rounds): SkipLayerNormalization took ~2.9 ms where the Add +
#: LayerNormalization it replaces took ~0.8-1.2 ms (seq 512; 16-21 ms vs ~3.5 ms at 2048), and BiasGelu is what
#: ORT's own ENABLE_ALL optimizer makes of Add + Gelu anyway. The packed-QKV contrib Attention looked within noise
#: of MultiHeadAttention on a loaded machine; on an idle one (load 0.9) it was as fast at seq 128 and 512 (22.8 vs
#: 22.8 ms, 92.3 vs 93.1 ms) and clearly faster at 2048 (551 vs 699 ms; ORT's optimizer's file: 559 ms), so on
#: CPU bias_gelu and packed_qkv run by default (bias_gelu also keeps the file fused at lower ``--opt-level``s);
#: on CUDA the set ORT's transformers optimizer applies for GPUs (not measured here: no GPU on these machines).
DEFAULT_FUSIONS = {"cpu": ("bias_gelu", "packed_qkv"), "cuda": ("skip_layer_norm", "bias_gelu", "mha_bias")}


def default_fusions(device: str) -> tuple[str, ...]:
    return DEFAULT_FUSIONS.get(device, DEFAULT_FUSIONS["cpu"])


def apply_fusions(model: onnx.ModelProto, only: set[str] | None = None, device: str = "cpu") -> dict[str, int]:
    """Run the fusions (``only``: a set of names; default :func:`default_fusions` of ``device``) in place;
    returns {fusion: times applied}."""
    done: dict[str, int] = {}
    only = set(default_fusions(device)) if only is None else only
    for f in fusions():
        if f.name not in only:
            continue
        k = apply_fusion(model, f)
        if k:
            done[f.name] = k
    return done


def describe(done: dict[str, int]) -> str:
    """The ``--explain`` lines for the fusions applied."""
    docs = {f.name: f.doc for f in fusions()}
    return "\n".join(f"fusion {name} x{k}: {docs.get(name, '')}" for name, k in done.items())


def requested(info: Any, fuse: Any) -> set[str]:
    """The fusions an export for target ``info`` runs when asked ``fuse`` (None: the default set of the target's
    device, ORT targets only; True/False; names); ValueError for a request that cannot be done."""
    if fuse is None:
        fuse = info.runtime == "onnxruntime"
    if not fuse:
        return set()
    if info.runtime != "onnxruntime":
        raise ValueError(f"--fuse emits ONNX Runtime contrib ops: target {info.name} promises standard ops only")
    if isinstance(fuse, bool):
        return set(default_fusions(info.device))
    only = set(fuse)
    bad = sorted(only - set(FUSION_NAMES))
    if bad:
        raise ValueError(f"unknown fusion {', '.join(bad)} (known: {', '.join(FUSION_NAMES)})")
    return only


def fuse_export(model: Any, fused: dict[str, int], info: Any, fuse: Any) -> dict[str, int]:
    """The export's fusion step: run the fusions on ``model`` in place as ``fuse`` asks (None: the default set of
    the target ``info``'s device, ORT targets only; True/False; names), update ``fused`` (the file's contrib /
    fused op counts) and return {fusion: times applied}; ValueError for a request that cannot be done."""
    names = requested(info, fuse)
    if not names:
        return {}
    done = apply_fusions(model, names, info.device)
    if done:
        counts: dict[str, int] = {}
        for n in model.graph.node:
            if n.domain == "com.microsoft" or (n.domain == "" and n.op_type == "Attention"):
                key = f"{n.domain + '.' if n.domain else ''}{n.op_type}"
                counts[key] = counts.get(key, 0) + 1
        for k in [k for k in fused if k.startswith("com.microsoft.") or k == "Attention"]:
            del fused[k]
        fused.update(counts)
    return done
