"""The body of ``nngraph generate`` (cli.py declares the options): prompts in, tokens or text out.

Prompts are text (``--prompt``, one row each, encoded with the model's tokenizer:
:func:`nngraph.compilers.tokenizer.find_tokenizer`) or token ids (``--ids`` rows, ``--prompt-file``). Rows of
different lengths are left-padded (:func:`nngraph.compilers.onnx.generate.stream` takes the mask). The
output is each row's text (prompt + generated) with a text prompt, else its ids; ``--stream`` prints every
step as it comes (one row: the text or ids as they grow; several: one line per step). Exit codes as in
:mod:`.commands`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .commands import Echo, as_onnx, needs_export, _input_files, _kernels, _parse_kernels


def _read_named(items: Sequence[str]) -> dict[str, Any]:
    """``NAME=FILE`` items -> arrays (generate's extra source inputs)."""
    from .runner import InferError, read_input_file

    out = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name.strip() or not file.strip():
            raise InferError(f"--input '{item}' is not NAME=FILE (e.g. --input src_lengths=lengths.npy)")
        out[name.strip()] = read_input_file(file.strip(), name.strip())
    return out


def _id_rows(rows: Sequence[str], flag: str) -> list[list[int]]:
    """Comma-separated token id rows (negative or over-int64 ids refused before ORT could wrap them)."""
    from .runner import InferError

    out = []
    for p in rows:
        try:
            out.append([int(t) for t in p.replace(" ", ",").split(",") if t.strip()])
        except ValueError:
            raise InferError(f"{flag} '{p}' is not comma-separated token ids (e.g. {flag} 1,2,3)") from None
        bad = next((t for t in out[-1] if not 0 <= t < 2**63), None)
        if bad is not None:
            raise InferError(f"{flag} '{p}': token id {bad} is {'negative' if bad < 0 else 'over int64'}; "
                             "token ids are 0..vocab-1")
        if not out[-1]:
            raise InferError(f"{flag} '{p}' holds no token id")
    return out


def prompt_rows(texts: Sequence[str], ids: Sequence[str], prompt_file: Path | None, tokenizer: Any,
                flag: str = "--ids") -> list[list[int]]:
    """The prompt's token id rows from text (``tokenizer``), ``--ids`` rows or a ``--prompt-file``."""
    import numpy as np

    from ..tokenizer import TokenizerError
    from .runner import InferError, read_input_file

    given = [bool(texts), bool(ids), prompt_file is not None]
    if sum(given) != 1:
        raise InferError("give the prompt one way: --prompt TEXT, --ids IDS (both repeatable, one row each) or "
                         "--prompt-file FILE")
    if prompt_file is not None:
        arr = read_input_file(prompt_file, "prompt", np.int64)
        return (arr[None] if arr.ndim == 1 else arr).tolist()
    if ids:
        return _id_rows(ids, flag)
    if tokenizer is None:
        raise InferError("--prompt is text and the model has no tokenizer (no tokenizer.json in its run folder, "
                         "metadata or folder): give --tokenizer FILE, or token ids with --ids")
    try:
        rows = [tokenizer.encode(t) for t in texts]
    except TokenizerError as exc:
        raise InferError(str(exc)) from None
    empty = [t for t, r in zip(texts, rows) if not r]
    if empty:
        raise InferError(f"--prompt {empty[0]!r} encodes to no tokens")
    return rows


def generate_command(model: Path, prompts: Sequence[str], prompt_file: Path | None, sampling: dict[str, Any], *,
                     ids: Sequence[str] = (), tokenizer: Path | None = None, stream: bool = False, target: str,
                     weights: Path | None, overrides: Sequence[str], output: Path | None, echo: Echo,
                     source: Sequence[str] = (), inputs: Sequence[str] = (), kernels: Sequence[str] = ()) -> int:
    from nngraph.io import write_text_atomic
    from nngraph.outputs import check_output

    from ..sampling import GenerationOptions, GenerationOptionsError
    from ..tokenizer import TokenizerError
    from .export import ExportError
    from .kernels import TARGETS
    from .runner import InferError
    from .weights import ExportWeightsError

    if target not in TARGETS:
        echo(f"error: unknown target '{target}' (use {', '.join(TARGETS)})", err=True)
        return 2
    try:
        options = GenerationOptions(**sampling)
    except GenerationOptionsError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    if not needs_export(model) and (weights is not None or overrides or kernels):
        echo("error: --weights, --set and --kernel apply to a spec; an ONNX file already holds its weights "
             "and kernels", err=True)
        return 2
    check_output(output, [("the model", model), ("the model's data file", f"{model}.data"),
                          ("the --weights file", weights), ("the --prompt-file", prompt_file),
                          ("the --tokenizer file", tokenizer), *_input_files(inputs)])
    try:
        more = {"source": _id_rows(source, "--source") if source else None, "inputs": _read_named(inputs)}
        with as_onnx(model, overrides, weights, target, True, _parse_kernels(kernels)) as (path, result):
            if result is not None:
                echo(f"exported {model} with a KV cache ({_kernels(result)})"
                     + (" and its encoder" if result.encoder is not None else ""), err=True)
            tok = tokenizer_of(model, path, tokenizer) if prompts else None  # ids in, ids out
            rows = prompt_rows(prompts, ids, prompt_file, tok)
            out = _decode(path, rows, options, tok, stream, echo, target=target, **more)
    except (InferError, ExportError, ExportWeightsError, TokenizerError) as exc:
        echo(f"error: {exc}", err=True)
        return 1
    if not stream:
        for row, text in zip(out["tokens"], out.get("text") or [None] * len(rows)):
            echo(text if text is not None else ",".join(str(t) for t in row))
    if output is not None:
        write_text_atomic(output, json.dumps(out) + "\n")
        echo(f"wrote {output}", err=True)
    return 0


def tokenizer_of(model: Path, path: Path, given: Path | None) -> Any:
    """The tokenizer for ``model`` (``path``: its ONNX file, maybe a temporary export)."""
    from ..tokenizer import find_tokenizer, read_tokenizer
    from .metadata import read_metadata
    from .runner import check_model_file

    if given is not None:
        return read_tokenizer(given)
    if model.is_dir():  # a run folder: its tokenizer.json
        return find_tokenizer(model)
    if needs_export(model):  # a spec has none of its own
        return None
    return find_tokenizer(path, read_metadata(str(check_model_file(path))))  # its metadata, else a file beside it


def _decode(path: Path, rows: list[list[int]], options: Any, tok: Any, stream: bool, echo: Echo,
            **run: Any) -> dict[str, Any]:
    """Run the decoder, printing steps when streaming: {tokens, prompt_lengths, generated[, text]}."""
    from ..tokenizer import TextStream
    from .generate import stream as steps_of

    new: list[list[int]] = [[] for _ in rows]
    pieces = TextStream(tok, len(rows)) if tok is not None else None
    if stream and pieces is not None and len(rows) == 1:
        echo(tok.decode(rows[0]), nl=False)
    for step in steps_of(path, rows, options, **run):
        for row, (t, on) in enumerate(zip(step.tokens.tolist(), step.active.tolist())):
            if on:
                new[row].append(t)
        if stream:
            _print_step(step, pieces, echo, len(rows))
    if stream and len(rows) == 1:
        echo("")
    out: dict[str, Any] = {"tokens": [r + n for r, n in zip(rows, new)], "prompt_lengths": [len(r) for r in rows],
                           "generated": new}
    if tok is not None:
        out["text"] = [tok.decode(r) + tok.decode(n) for r, n in zip(rows, new)]
    return out


def _print_step(step: Any, pieces: Any, echo: Echo, batch: int) -> None:
    """One row: its new text (or id) without a newline; several rows: one line per step."""
    if pieces is not None:
        text = pieces.add(step.tokens.tolist(), step.active.tolist())
        echo(text[0], nl=False) if batch == 1 else echo(json.dumps(text, ensure_ascii=False))
    elif batch == 1:
        echo(f"{int(step.tokens[0])} ", nl=False)
    else:
        echo(",".join(str(t) for t in step.tokens.tolist()))
