"""Post-export rewriting of the ONNX graph: opset conversion, placeholders -> real ops, opset imports, IR version.

The TorchScript exporter writes opset <= 20 and the ``ai.nngraph`` placeholders
(:mod:`.kernels.base`, :mod:`.lowering.ssm`). :func:`finish`

1. converts the default domain to the requested opset with ``onnx.version_converter`` (its
   adapters handle the ops whose definition changed, e.g. GroupNormalization-21);
2. replaces every ``ai.nngraph::Attention`` by its kernel's node(s) (the kernel named in the
   node's JSON ``config``) and every ``ai.nngraph::SelectiveScan`` by an ONNX ``Scan``;
3. drops the ``ai.nngraph`` opset import, adds ``com.microsoft`` when a contrib op is used, and
   sets the IR version to the lowest the opset needs (:func:`.opsets.ir_version`);
4. stores tied weights once (:func:`share_tied_weights`).
"""

from __future__ import annotations

import json

import onnx
from onnx import helper

from .kernels import kernel_named
from .kernels.base import DOMAIN, PLACEHOLDER
from .lowering import EMITTERS, discover
from .names import FreshNames
from .opsets import ir_version

MAX_TORCHSCRIPT_OPSET = 20


def convert_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The model with its default-domain opset converted to ``opset`` (unchanged when already there)."""
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if current == opset:
        return model
    from onnx import version_converter

    return version_converter.convert_version(model, opset)


def replace_placeholders(model: onnx.ModelProto) -> dict[str, int]:
    """Swap the ``ai.nngraph`` placeholders for their real ops in place; returns op counts by emitted op type."""
    names = FreshNames(model)
    discover()  # the lowerings' placeholder emitters
    counts: dict[str, int] = {}
    new_nodes, infos = [], []
    for node in model.graph.node:
        if node.domain != DOMAIN:
            new_nodes.append(node)
            continue
        if node.op_type == PLACEHOLDER:
            cfg = json.loads(helper.get_attribute_value(next(a for a in node.attribute if a.name == "config")))
            inputs = dict(zip(cfg["slots"], node.input))
            kernel = kernel_named(cfg["kernel"])
            emitted = kernel.emit(inputs, list(node.output), cfg, names.fresh(node.name or kernel.name))
            if hasattr(kernel, "value_info"):
                infos += kernel.value_info(inputs, list(node.output), cfg)
        elif node.op_type in EMITTERS:
            emitted = EMITTERS[node.op_type](node, names)
        else:
            raise ValueError(f"unknown placeholder {node.domain}::{node.op_type}")
        for e in emitted:
            key = f"{e.domain + '.' if e.domain else ''}{e.op_type}"
            counts[key] = counts.get(key, 0) + 1
        new_nodes.extend(emitted)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    if counts:
        # the tracer's value_info around a placeholder describes the placeholder, not the op that replaced it
        # (and symbolic hidden sizes there confuse ONNX's Attention shape inference): let inference redo it
        del model.graph.value_info[:]
        model.graph.value_info.extend(infos)
    return counts


def fix_imports(model: onnx.ModelProto) -> None:
    """Opset imports matching the domains used; the IR version the default opset needs."""
    domains = {n.domain for n in model.graph.node}
    keep = [o for o in model.opset_import if o.domain != DOMAIN and (o.domain in ("", "ai.onnx") or o.domain in domains)]
    if "com.microsoft" in domains and not any(o.domain == "com.microsoft" for o in keep):
        keep.append(helper.make_opsetid("com.microsoft", 1))
    del model.opset_import[:]
    model.opset_import.extend(keep)
    default = next((o.version for o in keep if o.domain in ("", "ai.onnx")), None)
    if default is not None:
        # exactly what the opset needs, not the newest IR the installed onnx writes: an older runtime reads the file
        model.ir_version = ir_version(default)


def share_tied_weights(model: onnx.ModelProto, min_elements: int = 4096) -> int:
    """Drop initializers that duplicate another one, or its transpose (tied weights: GPT-2's ``lm_head`` is
    ``wte``, which constant folding stores a second time transposed); the copy becomes a ``Transpose`` node of
    the original. Returns how many were dropped."""
    from onnx import numpy_helper

    big = [t for t in model.graph.initializer if len(t.dims) == 2 and t.dims[0] * t.dims[1] >= min_elements]
    by_size: dict[tuple, list] = {}
    for t in big:
        by_size.setdefault((tuple(sorted(t.dims)), t.data_type), []).append(t)
    replace: dict[str, tuple[str, bool]] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        arrays = {t.name: numpy_helper.to_array(t) for t in group}
        for i, a in enumerate(group):
            if a.name in replace:
                continue
            for b in group[i + 1:]:
                if b.name in replace:
                    continue
                x, y = arrays[a.name], arrays[b.name]
                if x.shape == y.shape and (x == y).all():
                    replace[b.name] = (a.name, False)
                elif x.shape == y.shape[::-1] and (x.T == y).all():
                    replace[b.name] = (a.name, True)
    if not replace:
        return 0
    names = FreshNames(model)
    keep = [t for t in model.graph.initializer if t.name not in replace]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    front = []
    for copy, (orig, transposed) in replace.items():
        if transposed:
            front.append(helper.make_node("Transpose", [orig], [copy], name=names.fresh(f"tied_{copy}"), perm=[1, 0]))
        else:
            front.append(helper.make_node("Identity", [orig], [copy], name=names.fresh(f"tied_{copy}")))
    nodes = front + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return len(replace)


def finish(model: onnx.ModelProto, opset: int) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Convert, replace placeholders, fix imports, share tied weights; returns the model and the fused-op counts."""
    model = convert_opset(model, opset)
    counts = replace_placeholders(model)
    fix_imports(model)
    share_tied_weights(model)
    return model, counts
