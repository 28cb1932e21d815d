"""The ONNX kernels as the exporter uses them, the export-time placeholder op, and torch helpers shared by the emitters.

An ONNX kernel is one entry of the kernel registry (:mod:`nngraph.compilers.kernels`: one file each --
``ort_gqa``, ``ort_mha``, ``onnx_attention``, ``decomposed`` -- holding ``check(ctx) -> reason``, ``why``,
``onnx_op``, ``min_opset`` and its preference ``order``) plus its emitter (:mod:`nngraph.compilers.onnx.emitters`,
named by the entry's ``emit``, imported on first use). :class:`OnnxKernel` joins the two:

``name``, ``doc``, ``onnx_op``, ``min_opset``
    from the registry (``--explain`` prints them; the export takes ``min_opset`` into its opset,
    :mod:`nngraph.compilers.onnx.opsets`);
``check(site, target, options) -> reason | None``, ``why(site, target, options)``
    the registry's decision on a :class:`KernelCtx` -- also exposed as ``applies(node, target)`` for the
    lowering pass (compilers/passes/rules/lower_kernels.py);
``forward(module, site, io, x, context, lengths, key_padding, doc_ids, positions)``
    the attention module's forward while exporting: projections, RoPE, position bias and the
    explicit mask in torch, then :class:`Placeholder` for the fused op;
``reference(cfg, tensors)``
    what the ONNX op computes, in torch (the placeholder's value while tracing);
``emit(inputs, outputs, cfg) -> [NodeProto]``
    the ONNX node(s) replacing the placeholder (:mod:`nngraph.compilers.onnx.rewrite`).

Why a placeholder: the TorchScript exporter turns ``Placeholder.apply`` into one node
``ai.nngraph::Attention`` (its ``symbolic``) holding the kernel's config as JSON; after the
export (and the opset conversion) the rewrite swaps it for the real op. The emitters therefore
build ONNX nodes directly with ``onnx.helper``, where every attribute and optional-input slot is
explicit, instead of going through a tracer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nngraph.compilers.kernels import KernelDef, emitter_of, kernels

from .site import AttentionSite, ExportOptions, site_of

#: the runtime the ONNX kernels of the registry serve
RUNTIME = "onnxruntime"
DOMAIN = "ai.nngraph"
PLACEHOLDER = "Attention"


# ----- targets --------------------------------------------------------------
@dataclass(frozen=True)
class TargetInfo:
    """The parts of a target the ONNX kernels read."""

    name: str
    runtime: str                      # "onnxruntime" (contrib ops available) | "onnx" (standard ops only)
    device: str                       # "cpu" | "cuda" | "any"
    dtype: str | None = None
    providers: tuple[str, ...] = ("CPUExecutionProvider",)


def _export_targets() -> dict[str, TargetInfo]:
    """The exporter's targets, all from compilers/targets/profiles.json: its ``onnx_targets`` (standard ONNX)
    and every profile whose runtime is onnxruntime (ort-cpu, ort-cuda)."""
    from nngraph.compilers.targets import load_profiles

    data = load_profiles()
    rows = [(n, p) for n, p in data.get("onnx_targets", {}).items() if not n.startswith("$")]
    rows += [(n, p) for n, p in data["profiles"].items() if p["runtime"] == "onnxruntime"]
    return {n: TargetInfo(n, p["runtime"], p["device"], p.get("dtype"),
                          tuple(p.get("providers") or ("CPUExecutionProvider",))) for n, p in rows}


_BUILTIN = _export_targets()
TARGETS = tuple(_BUILTIN)


def target_info(target: Any) -> TargetInfo:
    """A :class:`TargetInfo` from a target name (``onnx``, ``ort-cpu``, ``ort-cuda``), a
    :class:`nngraph.compilers.targets.Target`, or a TargetInfo."""
    if isinstance(target, TargetInfo):
        return target
    if isinstance(target, str):
        key = target.strip().lower()
        if key in _BUILTIN:
            return _BUILTIN[key]
        raise ValueError(f"unknown ONNX target '{target}' (known: {', '.join(TARGETS)})")
    runtime = getattr(target, "runtime", "onnxruntime")
    return TargetInfo(str(getattr(target, "name", "ort-cpu")), "onnx" if runtime not in ("onnxruntime",) else runtime,
                      str(getattr(target, "device", "cpu")), getattr(target, "dtype", None),
                      tuple(getattr(target, "providers", ()) or ("CPUExecutionProvider",)))


# ----- kernels: the registry's decision + the emitter's code -------------------------------
@dataclass(frozen=True)
class KernelCtx:
    """What an ONNX kernel's ``check`` and ``why`` read."""

    site: AttentionSite
    target: TargetInfo
    options: ExportOptions


class Emitter:
    """Base class of an ONNX kernel's code (:mod:`nngraph.compilers.onnx.emitters`); ``name`` is the kernel's."""

    def __init__(self, name: str):
        self.name = name

    @staticmethod
    def fused(module: Any, site: AttentionSite, io: "KVIO | None", past: Any, cfg: dict[str, Any],
              tensors: dict[str, Any]) -> Any:
        """The placeholder on ``tensors`` plus the past key/value (if any), the present ones recorded for the
        export's outputs, the output projection applied: y = out(op(q, k, v, ...))."""
        outs = placeholder(cfg, {**tensors, "past_key": past[0] if past is not None else None,
                                 "past_value": past[1] if past is not None else None})
        if past is not None:
            io.present[site.node] = (outs[1], outs[2])
        return module.out(outs[0])

    def forward(self, module: Any, site: AttentionSite, io: "KVIO | None", x: Any, context: Any = None,
                lengths: Any = None, key_padding: Any = None, doc_ids: Any = None, positions: Any = None) -> Any:
        raise NotImplementedError

    def reference(self, cfg: dict[str, Any], tensors: dict[str, Any]) -> tuple[Any, ...]:
        raise NotImplementedError

    def emit(self, inputs: dict[str, str], outputs: list[str], cfg: dict[str, Any], name: str) -> list[Any]:
        raise NotImplementedError


class OnnxKernel:
    """One ONNX kernel of the registry: its decision (``check``, ``why``) and, looked up on first use, its
    emitter's code (``forward``, ``reference``, ``emit``, ``value_info``)."""

    def __init__(self, defn: KernelDef):
        self.defn = defn
        self.name, self.doc, self.onnx_op, self.min_opset = defn.name, defn.doc, defn.onnx_op, defn.min_opset
        self._emitter: Emitter | None = None

    def check(self, site: AttentionSite, target: TargetInfo, options: ExportOptions) -> str | None:
        """Why this kernel cannot run the node on the target (None: it can)."""
        return self.defn.check(KernelCtx(site, target, options))

    def why(self, site: AttentionSite, target: TargetInfo, options: ExportOptions) -> str:
        """Why this kernel is a good choice for the node (shown by ``--explain`` when it is chosen)."""
        return self.defn.why(KernelCtx(site, target, options)) if self.defn.why else self.doc

    def applies(self, node: Any, target: Any, options: ExportOptions | None = None) -> str | None:
        """Why this kernel cannot lower IR ``node`` on ``target`` (None: it can)."""
        try:
            site = site_of(node)
        except (KeyError, TypeError, ValueError) as exc:
            return f"cannot read the node: {exc}"
        return self.check(site, target_info(target), options or ExportOptions())

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        if self._emitter is None:
            self._emitter = emitter_of(self.name)(self.name)
        return getattr(self._emitter, attr)

    def __repr__(self) -> str:
        return f"<ONNX attention kernel {self.name}>"


@dataclass
class KVIO:
    """KV-cache tensors of an export with ``kv_cache``: past (graph inputs) and present (graph outputs) by node."""

    past: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    present: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: the cached length as a 0-d int64 tensor (traced from the first past input's shape)
    past_len: Any = None


_KERNELS: dict[str, OnnxKernel] = {}


def registered() -> list[OnnxKernel]:
    """Every ONNX kernel of the registry, in preference order."""
    for k in kernels(RUNTIME):
        _KERNELS.setdefault(k.name, OnnxKernel(k))
    return [_KERNELS[k.name] for k in kernels(RUNTIME)]


def kernel_named(name: str) -> OnnxKernel:
    if name not in _KERNELS:
        registered()
    return _KERNELS[name]


# ----- the placeholder ------------------------------------------------------------
def _placeholder_class():
    import torch

    class Placeholder(torch.autograd.Function):
        """``ai.nngraph::Attention(tensors..., config=JSON)``; evaluates as the kernel's torch reference."""

        @staticmethod
        def forward(ctx, config: str, *tensors):  # noqa: D401 - torch API
            cfg = json.loads(config)
            # computed untraced: the exporter replaces the node by ``symbolic`` anyway, and tracing the
            # reference into the node's body trips a TorchScript pass (peephole) on some bodies
            state = torch._C._get_tracing_state()
            torch._C._set_tracing_state(None)
            try:
                out = kernel_named(cfg["kernel"]).reference(cfg, dict(zip(cfg["slots"], tensors)))
            finally:
                torch._C._set_tracing_state(state)
            return out

        @staticmethod
        def symbolic(g, config: str, *tensors):
            cfg = json.loads(config)
            outs = g.op(f"{DOMAIN}::{PLACEHOLDER}", *tensors, config_s=config, outputs=len(cfg["outputs"]))
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            like = dict(zip(cfg["slots"], tensors))
            for value, kind in zip(outs, cfg["outputs"]):
                src = like["query"] if kind == "y" else like["key"]
                rank = 3 if kind == "y" else 4
                value.setType(src.type().with_sizes([None] * rank))
            return tuple(outs) if len(outs) > 1 else outs[0]

    return Placeholder


_PLACEHOLDER = None


def placeholder(cfg: dict[str, Any], tensors: dict[str, Any]) -> tuple[Any, ...]:
    """Run the placeholder op on the named tensors (in ``cfg['slots']`` order); returns its outputs as a tuple."""
    global _PLACEHOLDER
    if _PLACEHOLDER is None:
        _PLACEHOLDER = _placeholder_class()
    cfg = dict(cfg)
    cfg["slots"] = [k for k in cfg["slots"] if tensors.get(k) is not None]
    out = _PLACEHOLDER.apply(json.dumps(cfg, sort_keys=True), *[tensors[k] for k in cfg["slots"]])
    return out if isinstance(out, tuple) else (out,)


# ----- torch helpers ---------------------------------------------------------------
def merge_heads(t: Any) -> Any:
    """[B, n, T, d] -> [B, T, n·d]."""
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], t.shape[1] * t.shape[3])


def split_heads(t: Any, n: int) -> Any:
    """[B, T, n·d] -> [B, n, T, d]."""
    return t.view(t.shape[0], t.shape[1], n, t.shape[2] // n).transpose(1, 2)


def past_of(io: KVIO | None, site: AttentionSite) -> tuple[Any, Any] | None:
    return io.past.get(site.node) if io is not None else None


def projected(module: Any, site: AttentionSite, x: Any, context: Any, offset: Any, rope: bool = True,
              positions: Any = None) -> tuple[Any, ...]:
    """q [B, H, T, d], k, v [B, G, S, d] from the module's projections, the position's q/k transform (RoPE)
    applied at offset.. (or at per-row ``positions`` [B, T]) when ``rope``."""
    import torch

    q, k, v = module.project(x, context)
    if site.pos.qk_transform and rope:
        if positions is None:
            positions = torch.arange(q.shape[-2], device=x.device) + offset
        q, k = module.hooks.qk(module, q, k, positions)  # the encoding's torch hook
    return q, k, v


def projected3d(module: Any, site: AttentionSite, x: Any, context: Any, offset: Any, rope: bool = True,
                positions: Any = None) -> tuple[Any, ...]:
    """q [B, T, H·d], k, v [B, S, G·d] straight from the projections (no head split / merge round trip),
    plus q in heads [B, H, T, d] for position biases that read the queries (``query_bias``, Shaw) or None.

    With RoPE applied here (``rope`` and the node uses it) the heads are split, rotated and merged back.
    """
    if site.pos.qk_transform and rope:
        q, k, v = projected(module, site, x, context, offset, rope=True, positions=positions)
        return merge_heads(q), merge_heads(k), merge_heads(v), q
    h, g, d = site.heads, site.kv_heads, site.head_dim
    if getattr(module, "fused", False):
        q, k, v = module.qkv(x).split([h * d, g * d, g * d], dim=-1)
    else:
        c = x if context is None else context
        q, k, v = module.q(x), module.k(c), module.v(c)
    return q, k, v, split_heads(q, h) if site.query_bias else None


def projected_with_bias(module: Any, site: AttentionSite, io: KVIO | None, x: Any, context: Any,
                        positions: Any = None) -> tuple[Any, ...]:
    """What the fused kernels (MHA, opset-23 Attention) start from: (past, offset, q, k, v, t, s, bias) with
    q/k/v from :func:`projected3d` after ``offset`` cached keys, t/s the query/key lengths and ``bias`` the
    module's position score term [.., t, s] (None without one), from per-row ``positions`` [B, T] when given
    (self-attention without a past: the keys' ids are the queries'; a past is refused by the kernels' checks)."""
    past = past_of(io, site)
    offset = past[0].shape[-2] if past is not None else 0
    q, k, v, q_heads = projected3d(module, site, x, context, offset, positions=positions)
    t, s = q.shape[1], offset + k.shape[1]
    ids = (positions, positions) if positions is not None else None
    bias = module.score_bias(q_heads if q_heads is not None else q, t, s, offset, ids) if site.has_bias else None
    return past, offset, q, k, v, t, s, bias


def additive_mask(mask_node: Any, bias: Any, batch: int, q_len: Any, kv_len: Any, offset: Any, dtype: Any,
                  lengths: Any = None, key_padding: Any = None, doc_ids: Any = None, full: bool = True) -> Any:
    """bias + (0 where the mask allows, the dtype's lowest value elsewhere): [B|1, H|1, T, S] float, or None.

    Adding the lowest finite value reproduces the reference's masked_fill exactly: a masked score
    becomes that value (|score| is far below its rounding step), so a fully masked row is uniform.
    ``full`` expands the query axis to T (ORT's Attention op requires [.., T, S]).
    """
    import torch

    from nngraph.compilers.torch.ops.attention_masks import mask_tensor

    add = bias
    if mask_node is not None:
        m = mask_tensor(mask_node, batch, q_len, kv_len, offset, lengths=lengths, key_padding=key_padding,
                        doc_ids=doc_ids, device=None)
        if m is not None:
            m_add = torch.where(m, torch.zeros((), dtype=dtype), torch.full((), torch.finfo(dtype).min, dtype=dtype))
            add = m_add if add is None else add + m_add
    if add is not None and full and add.shape[-2] != q_len:
        add = add.expand(add.shape[0], add.shape[1], q_len, add.shape[-1])
    return add


def reference_core(q: Any, k: Any, v: Any, scale: float, add: Any = None, causal: bool = False,
                   window: int | None = None, lengths: Any = None) -> Any:
    """softmax(q kᵀ·scale + add, causal bottom-right / window / key lengths) v for q [B, H, T, d], k, v [B, G, S, d].

    Causal alignment is bottom-right (query i is at position S - T + i), which is top-left when T = S.
    """
    import torch

    heads, groups = q.shape[1], k.shape[1]
    if groups != heads:
        k, v = k.repeat_interleave(heads // groups, 1), v.repeat_interleave(heads // groups, 1)
    t, s = q.shape[-2], k.shape[-2]
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if add is not None:
        scores = scores + add
    low = torch.finfo(scores.dtype).min
    qi = torch.arange(t).view(t, 1) + (s - t)
    kj = torch.arange(s).view(1, s)
    if causal:
        scores = scores.masked_fill(kj > qi, low)
    if window is not None:
        scores = scores.masked_fill(qi - kj >= window, low)
    if lengths is not None:
        scores = scores.masked_fill(kj.view(1, 1, 1, s) >= lengths.view(-1, 1, 1, 1), low)
    return torch.matmul(torch.softmax(scores, dim=-1), v)
