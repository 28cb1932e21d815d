"""The bodies of ``nngraph export``, ``nngraph infer`` and ``nngraph generate`` (cli.py declares the options).

Each returns the exit code and prints through ``echo(text, err=False)``: 0 ok, 1 invalid input or a
failed check (the message says what to change), 2 a usage error. Spec errors propagate as
:class:`nngraph.SpecError` (cli.run_guarded prints them as file:line:col diagnostics).
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

Echo = Callable[..., None]


def _parse_kernels(items: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        node, sep, kernel = item.partition("=")
        if sep:
            out[node.strip()] = kernel.strip()
        else:
            out["*"] = item.strip()
    return out


def _parse_dynamic(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def export_command(spec: Path, output: Path | None, *, weights: Path | None, target: str, opset: int | None,
                   dynamic: str | None, dims: Sequence[str] | None, kv_cache: bool, kernels: Sequence[str] | None,
                   explain: bool, verify: bool, tolerance: float | None, overrides: Sequence[str], seed: int,
                   echo: Echo, include_optional: bool = False, network: str | None = None, fuse: str | None = None,
                   dtype: str = "float32", external_data: bool | None = None, expected_seq: int | None = None,
                   tokenizer: Path | None = None, triton: Path | None = None, triton_max_batch: int = 16) -> int:
    from nngraph.compilers.torch.check import parse_dims
    from nngraph.run_folder import model_source
    from nngraph.outputs import check_beside, check_output, folder_files, refuse_input_beside, spec_inputs
    from nngraph.spec import load_spec

    from ..tokenizer import TokenizerError
    from .export import ExportError, explain_text, export_graph, lowering_of, opset_for, plan
    from .kernels import TARGETS
    from .weights import ExportWeightsError

    if target not in TARGETS:
        echo(f"error: unknown target '{target}' (use {', '.join(TARGETS)})", err=True)
        return 2
    inputs = [*spec_inputs(spec), ("the --weights file", weights), ("the --tokenizer file", tokenizer),
              *folder_files("a file of the --weights folder", weights, "checkpoints")]
    check_output(output, inputs)
    if external_data:
        check_beside(output, f"{output}.data", inputs, "--external-data")
    elif external_data is None:  # weights over 2 GB go to OUT.data on their own (files.ModelFiles)
        refuse_input_beside(output, f"{output}.data", inputs, "a model with weights over 2 GB writes")
    if kv_cache:  # an encoder-decoder's KV-cache export also writes OUT.encoder.onnx (compilers/onnx/seq2seq.py)
        from .seq2seq import encoder_path

        check_beside(output, encoder_path(output), inputs, "--kv-cache")
    if triton is not None and (output is not None or kv_cache):
        echo("error: --triton writes its own model file: give -o or --triton, not both; and a --kv-cache decoder "
             "needs a decoding loop around it (nngraph serve --generate)", err=True)
        return 2
    if output is None and triton is None and not explain:
        echo("error: give -o FILE.onnx or --triton DIR (or --explain to only show the plan)", err=True)
        return 2
    try:
        sizes = parse_dims(list(dims or []))
    except ValueError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    graph, spec, weights = model_source(spec, overrides, weights, network)  # a run folder: its spec and weights
    if network is not None:  # one network of a spec with several (nngraph/spec/networks.py)
        from nngraph.spec.networks import select

        try:
            graph = select(graph, network)
        except ValueError as exc:
            echo(f"error: {exc}", err=True)
            return 2
    if triton is not None:  # DIR/NAME/1/model.onnx beside DIR/NAME/config.pbtxt (compilers/onnx/triton.py)
        from .triton import repository_paths

        output, config = repository_paths(triton, graph.name)
        check_output(output, inputs, "--triton")
        check_output(config, inputs, "--triton")
    forced = _parse_kernels(kernels)
    try:
        fusions = _parse_fuse(fuse)
    except ValueError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    try:
        if output is None:
            choices = plan(graph, target, opset, kv_cache, forced, expected_seq)
            chosen, reason = opset_for(graph, choices, target, fusions, opset)
            echo(explain_text(choices, lowering_of(graph), target, chosen, opset_reason=reason))
            return 0
        result = export_graph(graph, output, weights=weights, target=target, opset=opset,
                              dynamic=_parse_dynamic(dynamic), dims=sizes, kv_cache=kv_cache, kernels=forced,
                              seed=seed, verify=verify, tolerance=tolerance, spec_file=str(spec),
                              include_optional=include_optional, fuse=fusions, dtype=dtype,
                              external_data=external_data, expected_seq=expected_seq, tokenizer=tokenizer)
    except (ExportError, ExportWeightsError, TokenizerError) as exc:
        echo(f"error: {exc}", err=True)
        return 1
    if explain:
        echo(result.explain())
    for note in result.notes:
        echo(note)
    kinds = {}
    for c in result.choices.values():
        kinds[c.kernel.name] = kinds.get(c.kernel.name, 0) + 1
    attn = ", ".join(f"{k} x{v}" for k, v in kinds.items()) or "none"
    if result.encoder is not None:
        echo(f"wrote {result.encoder.path} (encoder, {result.encoder.size_bytes / 1e6:.1f} MB)")
    extra = f", {result.dtype}" if result.dtype != "float32" else ""
    extra += f", weights in {result.external_data}" if result.external_data else ""
    echo(f"wrote {output} ({result.size_bytes / 1e6:.1f} MB, opset {result.opset}, target {result.target}{extra}, "
         f"attention: {attn}; dynamic: {', '.join(result.dynamic) or 'none'}) in {result.seconds:.1f} s")
    if result.kv_cache:
        echo(f"KV cache: {len(result.kv_cache['layers'])} layers as past.<i>.key/value inputs and "
             "present.<i>.key/value outputs")
    if triton is not None:
        from .triton import write_config

        write_config(output, config, graph.name, target, triton_max_batch)
        echo(f"wrote {config} (Triton model '{graph.name}', ONNX Runtime backend)")
    if result.verification is not None:
        echo(f"checked against torch (tolerance {result.verification.tolerance:g}):\n"
             f"{result.verification.describe()}")
    return 0


def _summary(name: str, arr: Any) -> str:
    import numpy as np

    a = np.asarray(arr)
    text = f"{name}: {list(a.shape)} {a.dtype.name}"
    if a.size and a.dtype.kind in "fiub":
        v = a.astype(np.float64)
        text += f"  min {v.min():.6g}  max {v.max():.6g}  mean {v.mean():.6g}"
        if a.size <= 16:
            text += f"  values {a.reshape(-1).tolist()}"
    return text


def _parse_fuse(text: str | None) -> bool | list[str] | None:
    """``--fuse``: None (default set), ``none``, ``all``, or a comma list of fusion names."""
    from .fusions import FUSION_NAMES

    if text is None:
        return None
    key = text.strip().lower()
    if key == "none":
        return False
    if key == "all":
        return list(FUSION_NAMES)
    names = [t.strip() for t in key.split(",") if t.strip()]
    bad = [n for n in names if n not in FUSION_NAMES]
    if bad or not names:
        raise ValueError(f"--fuse {text}: unknown fusion {', '.join(bad) or '(none given)'} "
                         f"(use none, all, or some of {', '.join(FUSION_NAMES)})")
    return names


def needs_export(model: Path) -> bool:
    """A model argument that is exported first: a spec (.yaml) or a run folder of ``nngraph train``."""
    from nngraph.run_folder import is_run_folder

    return model.suffix in (".yaml", ".yml") or is_run_folder(model)


@contextmanager
def as_onnx(model: Path, overrides: Sequence[str], weights: Path | None, target: str,
             kv_cache: bool, kernels: dict[str, str] | None = None) -> Iterator[tuple[Path, Any]]:
    """(an ONNX file, the export's result or None): ``model`` itself when it is one; a spec or a run folder (its
    recorded overrides and weights) exported to a temporary file, removed afterwards (``kernels``: forced
    attention kernels, as ``export --kernel``)."""
    if not needs_export(model):
        yield model, None
        return
    from nngraph.run_folder import model_source

    from .export import export_graph

    graph, spec, weights = model_source(model, overrides, weights)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        yield path, export_graph(graph, path, weights=weights, target=target, kv_cache=kv_cache, spec_file=str(spec),
                                 kernels=kernels or {})


def _kernels(result: Any) -> str:
    """The attention kernels an export chose, for its one-line note."""
    return ", ".join(sorted({c.kernel.name for c in result.choices.values()})) or "no attention"


def infer_command(model: Path, inputs: Sequence[str], output: Path | None, target: str, echo: Echo,
                  threads: int | None = None, opt_level: str = "all", spin: bool | None = None) -> int:
    import io

    import numpy as np

    from nngraph.io import write_bytes_atomic
    from nngraph.outputs import check_output

    from .export import ExportError
    from .kernels import TARGETS
    from .runner import InferError, check_threads, open_model, parse_input_args, run_session
    from .weights import ExportWeightsError

    try:
        check_threads(threads)
    except InferError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    if target not in TARGETS:
        echo(f"error: unknown target '{target}' (use {', '.join(TARGETS)})", err=True)
        return 2
    check_output(output, [("the model", model), ("the model's data file", f"{model}.data"), *_input_files(inputs)])
    try:
        with as_onnx(model, [], None, target, False) as (path, result):
            if result is not None:
                echo(f"exported {model} ({_kernels(result)})", err=True)
            session = open_model(path, target, threads, opt_level=opt_level, spin=spin)
            feeds = parse_input_args(list(inputs), session)
            outputs = run_session(session, feeds)
    except (InferError, ExportError, ExportWeightsError) as exc:
        echo(f"error: {exc}", err=True)
        return 1
    for name, arr in outputs.items():
        echo(_summary(name, arr))
    if output is not None:
        buf = io.BytesIO()
        np.savez(buf, **outputs)
        write_bytes_atomic(output, buf.getvalue())
        echo(f"wrote {output}")
    return 0


def _input_files(items: Sequence[str]) -> list[tuple[str, str]]:
    """The files of ``--input NAME=FILE`` items, as ``check_output`` inputs."""
    return [(f"the --input file of '{name}'", file) for name, sep, file in (i.partition("=") for i in items) if sep]
