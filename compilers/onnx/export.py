"""Export a spec to ONNX: torch model -> TorchScript-exporter trace with lowered dynamic parts -> fused ops -> checked file.

Steps of :func:`export_graph`:

1. build the torch model (:func:`nngraph.compilers.torch.build_module`), load ``weights``
   (:mod:`.weights`: weights files, training checkpoints with LoRA merged), eval mode;
2. choose an attention kernel per ``attention`` node for the target (:mod:`.kernels`);
3. trace with the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) while the
   dynamic parts are lowered (:mod:`.lowering`) and the missing/incorrect ATen translations are
   replaced (:mod:`.symbolics`); every symbolic input dim in ``dynamic`` (default: all) is a named
   dynamic axis;
4. convert to the export's opset -- the one asked, or by default the lowest that the chosen kernels,
   the lowerings and the fusions declare they need (:mod:`.opsets`: 17 for an MLP or a CNN, 23 with the
   standard ``Attention`` op) --, swap the placeholders for the chosen ONNX ops
   (:mod:`.rewrite`), write the metadata (:mod:`.metadata`), run
   ``onnx.checker.check_model(full_check=True)``;
5. ``verify`` (default on): run the file in ONNX Runtime and the torch model on random inputs at
   two sizes of every dynamic dim and compare (max abs diff <= ``tolerance``) -- a dim frozen by
   the trace shows up here, not in production;
6. write the file atomically (temp file + rename).

Why the TorchScript exporter and not ``dynamo=True``: on these machines (torch 2.13, 2 CPU cores)
the dynamo exporter takes 10-40 s per model (an MLP: ~10 s) against 0.3-5 s, which decides whether
every zoo spec can be exported in the test suite; the TorchScript exporter also lets a
``torch.autograd.Function`` name its own ONNX node (``symbolic``), which is how the fused
kernels and the SSM ``Scan`` are emitted exactly. Its limits (opset <= 20, frozen Python control
flow) are handled by the opset conversion and the lowering above, and checked by ``verify``.
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .axes import _batch_symbol, _dynamic_axes, _io_meta, concrete, length_bound_symbols
from .files import EXTERNAL_DATA_THRESHOLD, ModelFiles
from .kernels import KVIO, ATTENTION_OPS, TARGETS, Choice, ExportOptions, choose_all, target_info
from .opsets import MAX_OPSET, MIN_OPSET

__all__ = ["EXTERNAL_DATA_THRESHOLD", "ExportError", "ExportResult", "Verification", "concrete", "explain_text",
           "export_graph", "export_spec", "length_bound_symbols", "lowering_of", "opset_for", "plan"]

LOWERED_OPS = {
    "mamba": "selective scan as one ONNX Scan over the sequence (state carried inside)",
    "moe": "top-k routing with run-time capacity; per-expert NonZero gather -> expert -> ScatterElements(add)",
    "global_pool": "one-hot [graphs, nodes] pooling with the graph count from the batch vector",
    "gcn_conv": "gather + ScatterElements(add) message passing (dynamic nodes/edges)",
    "gin_conv": "gather + ScatterElements(add) message passing (dynamic nodes/edges)",
    "gat_conv": "segment softmax with ScatterElements(max/add) (dynamic nodes/edges)",
    "sage_conv": "gather + ScatterElements message passing (dynamic nodes/edges)",
    "message_passing": "message block on gathered edges + ScatterElements aggregation (dynamic nodes/edges)",
    "lstm": "the ONNX LSTM op (loops over the dynamic sequence itself)",
    "gru": "the ONNX GRU op (loops over the dynamic sequence itself)",
    "rnn": "the ONNX RNN op (loops over the dynamic sequence itself)",
    "recur": "time loop unrolled by the tracer: the time dim of its sequences is fixed in the file",
    "act": "all max_steps ACT steps unrolled (steps after a position halts weigh 0: the eager early exit's result)",
    "ode": "the fixed-step solver's steps unrolled (dopri5 is adaptive: not exportable)",
}


class ExportError(ValueError):
    """An export that cannot be done or failed its checks (message says what and what to change)."""


@dataclass
class Verification:
    """ORT vs torch on random inputs: max abs diff per (sizes, output).

    A run passes when max |ORT - torch| <= tolerance · max(1, max |torch|): the absolute tolerance for
    outputs of order one, relative for large ones (float32 rounding grows with the magnitude).
    """

    tolerance: float
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_diff(self) -> float:
        return max((r["max_abs_diff"] for r in self.runs), default=0.0)

    def passes(self, run: dict[str, Any]) -> bool:
        """Within tolerance, and every output finite: NaN against NaN "agrees" but checks nothing."""
        return not run.get("nonfinite") and run["max_abs_diff"] <= self.tolerance * max(1.0, run.get("scale", 1.0))

    @property
    def ok(self) -> bool:
        return all(self.passes(r) for r in self.runs)

    def describe(self) -> str:
        lines = []
        for r in self.runs:
            mark = "ok" if self.passes(r) else "MISMATCH"
            if r.get("nonfinite"):
                mark = f"NOT FINITE ({r['nonfinite']} NaN or infinite values in ORT's outputs)"
            sizes = ", ".join(f"{k}={v}" for k, v in r["sizes"].items()) or "static shapes"
            lines.append(f"  {r.get('what', 'forward')} at {sizes}: max |ORT - torch| = {r['max_abs_diff']:.2e} {mark}")
        return "\n".join(lines)


@dataclass
class ExportResult:
    """What :func:`export_graph` did."""

    path: Path | None
    spec: str
    opset: int
    target: str
    choices: dict[str, Choice]
    fused_ops: dict[str, int]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    dynamic: list[str]
    lowering: dict[str, str]
    kv_cache: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    verification: Verification | None = None
    seconds: float = 0.0
    size_bytes: int = 0

    fusions: dict[str, int] = field(default_factory=dict)
    encoder: "ExportResult | None" = None   # an encoder-decoder's encoder file (kv_cache export)
    dtype: str = "float32"
    external_data: str | None = None         # the weights file beside the model (large models)
    opset_reason: str = ""                   # why the file has its opset (:func:`nngraph.compilers.onnx.opsets.explain`)

    def explain(self) -> str:
        text = explain_text(self.choices, self.lowering, self.target, self.opset, self.fused_ops, self.opset_reason)
        if self.fusions:
            from .fusions import describe

            text += "\n" + describe(self.fusions)
        return text


def explain_text(choices: Mapping[str, Choice], lowering: Mapping[str, str], target: str, opset: int,
                 fused: Mapping[str, int] | None = None, opset_reason: str = "") -> str:
    """The ``--explain`` report: the opset and why, every attention node's kernel and reason, every candidate's
    verdict, other lowerings."""
    lines = [f"target {target}, opset {opset}" + (f" ({opset_reason})" if opset_reason else "")]
    if not choices:
        lines.append("no attention nodes")
    for name, c in choices.items():
        lines.append(f"{name}: {c.kernel.name} ({c.kernel.onnx_op}) -- {c.reason}")
        lines.append(f"    mask: {c.site.parts.describe()}; position: {c.site.position}; heads {c.site.heads}, "
                     f"kv_heads {c.site.kv_heads}, head_dim {c.site.head_dim}")
        for kname, reason in c.verdicts:
            if kname == c.kernel.name:
                continue
            lines.append(f"    {kname}: " + ("applies, lower preference" if reason is None else f"no: {reason}"))
    for name, how in lowering.items():
        lines.append(f"{name}: {how}")
    if fused:
        lines.append("fused ops in the file: " + ", ".join(f"{k} x{v}" for k, v in sorted(fused.items())))
    return "\n".join(lines)


# ----- the export ---------------------------------------------------------------
def _torch():
    import torch

    return torch


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def export_spec(spec: str | Path, output: str | Path | None, overrides: Sequence[str] | None = None,
                **kwargs: Any) -> ExportResult:
    """Load and validate ``spec`` (``overrides`` as ``--set``) and export it; see :func:`export_graph`."""
    from nngraph import load_spec

    graph = load_spec(spec, list(overrides or []))
    return export_graph(graph, output, spec_file=str(spec), **kwargs)


def plan(graph: Any, target: Any = "ort-cpu", opset: int | None = None, kv_cache: bool = False,
         kernels: Mapping[str, str] | None = None, expected_seq: int | None = None) -> dict[str, Choice]:
    """The attention kernel choices an export would make (no torch needed); ``opset`` None: the export picks the
    opset, so every kernel up to :data:`MAX_OPSET` may apply."""
    options = ExportOptions(opset=opset or MAX_OPSET, kv_cache=kv_cache, expected_seq=expected_seq)
    try:
        return choose_all(graph, target, options, dict(kernels or {}))
    except ValueError as exc:
        raise ExportError(str(exc)) from None


def opset_for(graph: Any, choices: Mapping[str, Choice], target: Any, fuse: Any, opset: int | None) -> tuple[int, str]:
    """(opset, why) of an export of ``graph`` with kernel ``choices``, target and fusions as asked: ``opset`` if
    given (checked against what the model needs), else the lowest the chosen kernels, lowerings and fusions need
    (:mod:`.opsets`)."""
    from . import opsets
    from .fusions import requested

    try:
        found = opsets.needs(graph, choices, requested(target_info(target), fuse))
        chosen = opsets.choose_opset(opset, found)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    return chosen, opsets.explain(chosen, opset, found)


def lowering_of(graph: Any) -> dict[str, str]:
    """How each dynamic node (other than attention) is lowered."""
    return {n.name: LOWERED_OPS[n.op] for n in graph.nodes.values() if n.op in LOWERED_OPS}


def export_graph(graph: Any, output: str | Path | None, *, weights: str | Path | None = None,
                 target: Any = "ort-cpu", opset: int | None = None, dynamic: Sequence[str] | None = None,
                 dims: Mapping[str, int] | None = None, kv_cache: bool = False,
                 kernels: Mapping[str, str] | None = None, seed: int = 0, include_optional: bool = False,
                 verify: bool = True, tolerance: float | None = None, module: Any = None,
                 spec_file: str | None = None, fuse: bool | Sequence[str] | None = None,
                 extra_metadata: Mapping[str, Any] | None = None, dtype: str = "float32",
                 external_data: bool | None = None, external_threshold: int | None = None,
                 expected_seq: int | None = None) -> ExportResult:
    """Export validated ``graph`` to ``output`` (None: build and check only); see the module doc.

    ``dynamic``: symbolic input dims that stay dynamic (default all); a dim left out is fixed at its
    ``dims`` size, which must then be given; ``dims``: sizes to trace at (default batch 3, the other
    dims 13, 11, 17, ...: values unlikely to equal a model constant); ``kv_cache``: add
    ``past.{i}.key/value`` inputs and ``present.{i}.key/value`` outputs per attention layer for
    incremental decoding; ``kernels``: force a kernel per node name (``*`` for all);
    ``module``: an already built torch model of ``graph`` whose weights are exported (``weights``, if
    given, are loaded into it); ``fuse``: run the ONNX Runtime fusions of :mod:`.fusions` on the
    exported graph -- None: the target device's measured default set (ort-cpu: bias_gelu; ort-cuda: also
    skip_layer_norm, mha_bias), never for ``onnx``; True: that set; False: none; a list of fusion names:
    only those; ``dtype``: ``float16`` converts the file
    (:mod:`.precision`; float32 inputs/outputs; checked at ``tolerance`` default 1e-2 relative instead
    of 1e-4); ``external_data``: weights in ``<output>.data`` beside the file (None: when they exceed
    ``external_threshold`` bytes, default :data:`EXTERNAL_DATA_THRESHOLD` = protobuf's 2 GiB limit less
    128 MiB); ``expected_seq``: the sequence length the file will mostly run at -- one file serves every
    length, and where the fastest attention kernel differs by length (see
    :func:`nngraph.compilers.onnx.kernels.order_for`) this picks it (recorded in the metadata and ``--explain``).
    """
    if kv_cache and _cross_memory(graph):
        from .seq2seq import export_seq2seq

        if output is None:
            raise ExportError("--kv-cache of an encoder-decoder writes two files: give -o")
        enc, dec = export_seq2seq(graph, output, module=module, weights=weights, seed=seed, target=target,
                                  opset=opset, dynamic=dynamic, dims=dims, kernels=kernels, verify=verify,
                                  tolerance=tolerance, spec_file=spec_file, fuse=fuse,
                                  include_optional=include_optional, dtype=dtype, external_data=external_data,
                                  external_threshold=external_threshold, expected_seq=expected_seq)
        dec.encoder = enc
        dec.notes.append(f"encoder (run once per source) written to {enc.path}")
        return dec
    start = time.perf_counter()
    torch = _torch()
    import onnx

    from nngraph import __version__

    from . import rewrite, symbolics
    from .inputs import default_sizes, sample_inputs, symbols, trace_sizes
    from .lowering import lowered
    from .metadata import set_metadata
    from .names import drop_initializer_inputs, name_initializers

    from .precision import DTYPES, FP16_TOLERANCE

    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype} is not supported: use {' or '.join(DTYPES)}")
    if tolerance is None:
        tolerance = FP16_TOLERANCE if dtype == "float16" else 1e-4
    if opset is not None and not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: use {MIN_OPSET}..{MAX_OPSET} (default: the lowest the "
                          "model needs)")
    info = target_info(target) if not isinstance(target, str) or target in TARGETS else None
    if info is None:
        raise ExportError(f"unknown target '{target}': use {', '.join(TARGETS[:-1])} or {TARGETS[-1]}")
    all_syms = symbols(graph, include_optional)
    frozen = length_bound_symbols(graph)
    dyn = [s for s in all_syms if s not in frozen] if dynamic is None else list(dynamic)
    unknown = [d for d in dyn if d not in all_syms]
    if unknown:
        raise ExportError(f"--dynamic names {', '.join(repr(u) for u in unknown)}, which is not a symbolic dim of the "
                          f"inputs (they have: {', '.join(all_syms) or 'none'})")
    for d in dyn:
        if d in frozen:
            raise ExportError(f"dim '{d}' cannot be dynamic: {frozen[d]}; export at a fixed size with --dim {d}=N")
    for d in all_syms:
        if d not in dyn and d not in frozen and d not in (dims or {}):
            raise ExportError(f"dim '{d}' is not in --dynamic, so the file fixes its size: give it with --dim {d}=N")
    choices = plan(graph, info, opset, kv_cache, kernels, expected_seq)
    opset, opset_reason = opset_for(graph, choices, info, fuse, opset)
    attn_nodes = [n for n in graph.nodes.values() if n.op in ATTENTION_OPS]
    if kv_cache:
        _check_kv(graph, attn_nodes)
    notes: list[str] = []
    given_module = module is not None
    if module is None:
        from nngraph.compilers.torch import build_module

        module = build_module(graph, seed=seed)
    if weights is not None:
        from .weights import load_into

        notes += load_into(module, graph, weights)
    module.eval()
    names = [n for n, gi in graph.inputs.items() if include_optional or not gi.optional]
    out_names = list(graph.outputs)
    sizes = trace_sizes(graph, dims)
    io_ = KVIO() if kv_cache else None
    kv_layers = []
    if kv_cache:  # self-attention layers only: cross-attention reads its memory (a graph input) every step
        for i, node in enumerate(n for n in attn_nodes if n.inputs.get("context") is None):
            site = choices[node.name].site
            kv_layers.append({"node": node.name, "past_key": f"past.{i}.key", "past_value": f"past.{i}.value",
                              "present_key": f"present.{i}.key", "present_value": f"present.{i}.value",
                              "kv_heads": site.kv_heads, "head_dim": site.head_dim})
    from .wrapper import ExportWrapper

    wrapper = ExportWrapper(module, names, out_names, io_, kv_layers, graph).eval()
    batch_sym = _batch_symbol(graph, names)
    dynamic_axes = _dynamic_axes(graph, names, out_names, dyn, kv_layers, batch_sym)
    in_all = names + [x for layer in kv_layers for x in (layer["past_key"], layer["past_value"])]
    out_all = out_names + [x for layer in kv_layers for x in (layer["present_key"], layer["present_value"])]
    opset_ts = min(opset, rewrite.MAX_TORCHSCRIPT_OPSET)
    attempts = [sizes] + ([default_sizes(graph, dims)] if default_sizes(graph, dims) != sizes else [])
    for attempt, sizes in enumerate(attempts):
        example = sample_inputs(graph, sizes, seed, include_optional)
        args = [example[n] for n in names]
        if kv_cache:
            b = concrete(graph.inputs[names[0]].type.shape[0], sizes)
            past_len = 7  # not a trace size (batch 3, primes from 11): the tracer keys sizes by value
            for layer in kv_layers:
                shape = (b, layer["kv_heads"], past_len, layer["head_dim"])
                args += [torch.randn(shape), torch.randn(shape)]
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings(), symbolics.registered(opset_ts), \
                    lowered(module, graph, choices, io_) as dispatch, torch.no_grad():
                warnings.simplefilter("ignore")
                wrapper.dispatch = dispatch
                torch.onnx.export(wrapper, tuple(args), buf, input_names=in_all, output_names=out_all,
                                  dynamic_axes=dynamic_axes, opset_version=opset_ts, do_constant_folding=True,
                                  dynamo=False, keep_initializers_as_inputs=True)  # no dedup: see .names
            break
        except Exception as exc:  # noqa: BLE001 - retry at the small default sizes, then name the spec and the cause
            if attempt + 1 < len(attempts):
                continue  # e.g. a trace length beyond a position table: the smaller default sizes
            raise ExportError(f"exporting '{graph.name}' failed: {type(exc).__name__}: {_first_line(exc)}") from exc
        finally:
            module.eval()  # torch.onnx.export restores the wrapper's mode recursively
    notes += [f"dim '{d}' is fixed at {sizes[d]}: {why}" for d, why in frozen.items() if d not in dyn]
    model = onnx.load_from_string(buf.getvalue())
    drop_initializer_inputs(model)
    name_initializers(model, module)
    model, fused = rewrite.finish(model, opset)
    from .fusions import fuse_export
    from .precision import convert

    try:
        fusions_done = fuse_export(model, fused, info, fuse)
        model, precision = convert(model, dtype, info, notes)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    model.producer_name, model.producer_version = "nngraph", __version__
    _describe_model(model, graph)
    io_meta = _io_meta(graph, names, out_names, dyn, sizes, kv_layers, batch_sym)
    kv_meta = None
    if kv_cache:
        kv_meta = {"token_input": names[0], "logits_output": out_names[0], "layers": kv_layers,
                   "batch": batch_sym, "layout": "[batch, kv_heads, seq, head_dim]"}
    lowering = lowering_of(graph)
    limits = [n.params.get("max_len") for n in graph.nodes.values()
              if n.op == "position_embedding" and n.params.get("type") == "learned" and n.params.get("max_len")]
    set_metadata(model, {
        "version": __version__, "spec": graph.name, "spec_file": spec_file or str(graph.file or ""),
        "fingerprint": graph.fingerprint(), "opset": str(opset), "opset_reason": opset_reason, "target": info.name,
        "attention_kernels": {n: {"kernel": c.kernel.name, "onnx_op": c.kernel.onnx_op, "reason": c.reason}
                              for n, c in choices.items()},
        "lowering": lowering, **({"fusions": fusions_done} if fusions_done else {}),
        "inputs": io_meta[0], "outputs": io_meta[1], "dynamic": dyn,
        "weights": str(weights) if weights is not None else "weights of the given torch module" if given_module
        else f"initial weights, seed {seed}",
        **({"kv_cache": kv_meta} if kv_meta else {}),
        **({"max_positions": str(min(limits))} if limits else {}),
        **({"precision": precision} if precision else {}),
        **({"expected_seq": str(expected_seq)} if expected_seq else {}),
        **dict(extra_metadata or {}),
    })
    files = ModelFiles(model, output, external_data, external_threshold)
    try:
        source = files.check()
    except OSError as exc:  # the temporary folder beside the output (external data): not the model's fault
        files.close()
        raise _write_error(output, exc) from None
    except Exception as exc:  # noqa: BLE001
        files.close()
        raise ExportError(f"the exported model of '{graph.name}' is not valid ONNX: {_first_line(exc)}") from exc
    result = ExportResult(Path(output) if output else None, graph.name, opset, info.name, choices, fused,
                          io_meta[0], io_meta[1], dyn, lowering, kv_meta, notes, size_bytes=files.size,
                          fusions=fusions_done, dtype=dtype, external_data=files.data_name, opset_reason=opset_reason)
    try:
        if verify:
            from .verify import verify_model

            result.verification = verify_model(source, graph, module, names, out_names, sizes, dyn, seed, tolerance,
                                               kv_meta, include_optional)
            if not result.verification.ok:
                ver = result.verification
                what = (f"the outputs of '{graph.name}' hold NaN or infinity (check the weights)"
                        if any(r.get("nonfinite") for r in ver.runs) else
                        f"the ONNX model of '{graph.name}' does not match torch"
                        f"{' (float16 file vs float32 torch)' if dtype == 'float16' else ''}")
                raise ExportError(f"{what}:\n{ver.describe()}\n(nothing was written; --no-verify writes anyway)")
        if output:
            try:
                files.commit()
            except OSError as exc:
                raise _write_error(output, exc) from None
    finally:
        files.close()
    result.seconds = time.perf_counter() - start
    return result


def _describe_model(model: Any, graph: Any) -> None:
    """The spec's name as the graph's name and its ``doc:`` as the model's ``doc_string`` (Netron and
    ``onnx.helper.printable_graph`` show both)."""
    model.graph.name = graph.name
    if graph.doc:
        model.doc_string = graph.doc if isinstance(graph.doc, str) else str(graph.doc)


def _write_error(output: Any, exc: OSError) -> ExportError:
    """Writing the model failed for a reason of the file system (a read-only folder, a full disk, a long name)."""
    folder = Path(output).parent
    return ExportError(f"cannot write '{output}' into the folder '{folder}': {exc.strerror or exc}"
                       f"{f' (at {exc.filename})' if exc.filename else ''}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _cross_memory(graph: Any) -> bool:
    """The graph has cross-attention on a memory it computes itself (an encoder-decoder to split)."""
    from .seq2seq import memory_of

    try:
        memory = memory_of(graph)
    except ValueError as exc:
        raise ExportError(f"--kv-cache: {exc}") from None
    return memory is not None and memory not in graph.inputs


def _check_kv(graph: Any, attn_nodes: list[Any]) -> None:
    if not attn_nodes:
        raise ExportError(f"--kv-cache: '{graph.name}' has no attention node to cache")
    for node in attn_nodes:
        ctx = node.inputs.get("context")
        if ctx is not None and ctx.node not in graph.inputs:
            raise ExportError(f"--kv-cache: node '{node.name}' is cross-attention on '{ctx}', which the graph "
                              "computes: export an encoder-decoder with nngraph.compilers.onnx.seq2seq (nngraph export "
                              "--kv-cache does so), which makes that memory a decoder input")
    if all(n.inputs.get("context") is not None for n in attn_nodes):
        raise ExportError(f"--kv-cache: '{graph.name}' has no self-attention node to cache")
    bad = [n.name for n in graph.nodes.values() if n.op in ("linear_attention", "performer_attention",
                                                             "linformer_attention", "mamba", "lstm", "gru", "rnn")]
    if bad:
        raise ExportError(f"--kv-cache: node '{bad[0]}' has state that is not a key/value cache")
    first = next(iter(graph.inputs.values()))
    if first.type.dtype not in ("int64", "int32") or len(first.type.shape) != 2:
        raise ExportError(f"--kv-cache: the first input '{first.name}' must be token ids [batch, seq]")
