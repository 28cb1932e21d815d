"""The ``nngraph`` command line.

Exit codes: 0 ok, 1 invalid input or failed check, 2 usage error. Errors are
``file:line:col: error: ...`` with the source line and a hint; no traceback
reaches the user unless ``--debug``. Heavy modules (torch, onnx) are imported
only by the commands that need them, so ``validate`` stays fast.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

_FAST_COMMANDS = {"validate"}


def _invoked_command() -> str | None:
    """The subcommand on the command line when this process is the nngraph CLI (not pytest importing cli)."""
    prog = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if prog.stem not in ("nngraph", "cli") and prog.parent.name != "nngraph":
        return None
    return next((a for a in sys.argv[1:] if not a.startswith("-")), None)  # global options are flags only


def _limits(max_params: int | None):
    from dataclasses import replace

    from nngraph.limits import DEFAULT_LIMITS
    return replace(DEFAULT_LIMITS, max_params=max_params) if max_params else DEFAULT_LIMITS


def _spec_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file()))
        else:
            files.append(p)
    return files


def _echo(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _validate_files(paths: list[Path], overrides: list[str], fmt: str, strict: bool, quiet: bool,
                    max_params: int | None, echo: Callable[..., None] = _echo) -> int:
    """The body of ``validate``: exit code 0 or 1."""
    from nngraph.errors import FORMATTERS
    from nngraph.spec import check_spec

    files = _spec_files(paths)
    if not files:
        echo("error: no spec files found", err=True)
        return 1
    all_diags, failed = [], 0
    for f in files:
        graph, diag = check_spec(f, overrides, _limits(max_params))
        items = list(diag)
        errors = [d for d in items if d.severity == "error" or strict]
        failed += bool(errors)
        all_diags.extend(items)
        if fmt == "text" and not quiet and not errors:
            extra = f" ({graph.total_params:,} parameters)" if graph is not None and graph.nodes else ""
            echo(f"ok: {f}{extra}")
    if fmt == "json":
        echo(FORMATTERS["json"](all_diags))
    elif all_diags:
        echo(FORMATTERS[fmt](all_diags), err=fmt == "text")
    if fmt == "text" and not quiet:
        echo(f"{len(files) - failed} valid, {failed} invalid", err=bool(failed))
    return 1 if failed else 0


if _invoked_command() in _FAST_COMMANDS and "--help" not in sys.argv:
    # `validate` runs in CI and pre-commit on every commit and must start in well under 0.5 s
    # (bench/validate_speed.py). typer imports rich eagerly (~150 ms) just for pretty help and
    # errors; validate prints plain text, so hide rich from typer for this command.
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]

import typer  # noqa: E402

app = typer.Typer(
    name="nngraph",
    help="Declarative, graph-based neural networks: validate, inspect, compile, train, export and run YAML specs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_STATE = {"debug": False}


class OutFormat(str, Enum):
    """Diagnostic output formats."""

    text = "text"
    json = "json"
    github = "github"


SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a var or param: key=value (repeatable)")]
DimOpt = Annotated[Optional[list[str]], typer.Option("--dim", help="size of a symbolic dim for random inputs: NAME=INT (repeatable)")]
MaxParams = Annotated[Optional[int], typer.Option("--max-params", help="refuse models with more parameters than this")]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="show Python tracebacks for internal errors")] = False) -> None:
    _STATE["debug"] = debug


def run_guarded(fn: Callable[[], int | None]) -> None:
    """Run a command body: SpecError -> formatted diagnostics and exit 1; other errors -> one line, exit 1."""
    from nngraph.errors import SpecError, format_text

    try:
        code = fn() or 0
    except SpecError as err:
        typer.echo(format_text(err.diagnostics), err=True)
        raise typer.Exit(1)
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: no tracebacks for users
        if _STATE["debug"]:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc}\n  (run with --debug for the traceback)", err=True)
        raise typer.Exit(1)
    raise typer.Exit(code)


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="spec files or directories (searched for *.yaml)")],
    set_: SetOpt = None,
    fmt: Annotated[OutFormat, typer.Option("--format", help="text, json, or github (Actions annotations)")] = OutFormat.text,
    strict: Annotated[bool, typer.Option(help="treat warnings (unused nodes) as errors")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="print only problems")] = False,
    max_params: MaxParams = None,
) -> None:
    """Check specs: schema, references, cycles, shapes and dtypes. Reports every error in every file."""

    def body() -> int:
        return _validate_files(paths, set_ or [], fmt.value, strict, quiet, max_params, typer.echo)

    run_guarded(body)


@app.command()
def schema(
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write here instead of stdout")] = None,
    check: Annotated[bool, typer.Option("--check", help="do not write: exit 1 if the file differs from what would be written")] = False,
) -> None:
    """Print (or write) the JSON Schema for spec files, generated from the op registry."""

    def body() -> int:
        from nngraph.schema import json_schema

        text = json.dumps(json_schema(), indent=2) + "\n"
        return _write_or_check(output, text, check, f"nngraph schema -o {output}")

    run_guarded(body)


@app.command()
def ops(family: Annotated[Optional[str], typer.Option(help="only this family")] = None) -> None:
    """List every primitive, by family, with its parameters."""

    def body() -> None:
        from nngraph.registry import families

        for fam, defs in families().items():
            if family and fam != family:
                continue
            typer.echo(f"{fam}:")
            for d in defs:
                params = ", ".join(k if p.required else f"{k}={p.default!r}" for k, p in d.params.items())
                typer.echo(f"  {d.name:<22} {d.summary}")
                if params:
                    typer.echo(f"  {'':<22} params: {params}")

    run_guarded(body)


class InspectFormat(str, Enum):
    """Output formats of ``inspect``."""

    text = "text"
    json = "json"


def _inspect_text(summary: dict, want_rich: bool) -> str | None:
    """Print the summary as a rich table when wanted and rich is importable; else return plain text."""
    from nngraph.inspect import format_table, node_rows

    if want_rich:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            return format_table(summary)
        console = Console()
        table = Table(title=f"{summary['name']} ({summary['file']})", title_justify="left")
        for col, just in (("node", "left"), ("op", "left"), ("output", "left"), ("params", "right")):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        for row in node_rows(summary):
            table.add_row(*row)
        console.print(table)
        plain = format_table(summary).split("\n")
        tail = plain[plain.index("outputs:"):] if "outputs:" in plain else plain[-1:]
        console.print("\n".join(tail), highlight=False, markup=False)
        return None
    return format_table(summary)


@app.command()
def inspect(
    spec: Annotated[Path, typer.Argument(help="the spec file")],
    set_: SetOpt = None,
    fmt: Annotated[InspectFormat, typer.Option("--format", help="text (a table) or json")] = InspectFormat.text,
    max_params: MaxParams = None,
    torch_check: Annotated[bool, typer.Option("--torch", help="also compile with PyTorch: real parameter count and a forward check on random inputs")] = False,
    dim: DimOpt = None,
) -> None:
    """Show every node: op, output shape(s) and parameter count, with block subtotals and the total."""

    def body() -> int:
        from nngraph.inspect import summarize
        from nngraph.spec import load_spec

        graph = load_spec(spec, set_ or [], _limits(max_params))
        summary = summarize(graph)
        check = _torch_check(graph, dim) if torch_check else None
        if check is not None:
            summary["torch"] = check
        if fmt == InspectFormat.json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            text = _inspect_text(summary, want_rich=sys.stdout.isatty())
            if text is not None:
                typer.echo(text)
            if check is not None:
                typer.echo(check["report"])
        return 0 if check is None or check["ok"] else 1

    run_guarded(body)


def _torch_check(graph, dim: list[str] | None, seed: int = 0, module=None) -> dict:
    """Compile (unless given a module), count real parameters, run a forward check: a JSON-ready dict."""
    from compilers.torch import build_module
    from compilers.torch.check import describe, forward_check, parse_dims

    module = module if module is not None else build_module(graph, seed=seed)
    real = sum(p.numel() for p in module.parameters())
    result = forward_check(module, graph, parse_dims(dim), seed=seed)
    agree = real == graph.total_params
    lines = [f"torch parameters: {real:,} ({'matches' if agree else 'DIFFERS FROM'} the spec's {graph.total_params:,})",
             describe(result)]
    return {"parameters": real, "ok": result.ok and agree, "problems": result.problems,
            "outputs": {k: {"torch": list(g), "inferred": list(w) if w else None} for k, (g, w) in result.outputs.items()},
            "report": "\n".join(lines)}


class KernelMode(str, Enum):
    """What lowered attention kernels must support."""

    inference = "inference"
    training = "training"


def _target_option(value: Optional[str]) -> Optional[str]:
    """--target: a known target string (usage error otherwise)."""
    if value is not None:
        from compilers.targets import TargetError, get_target

        try:
            get_target(value)
        except TargetError as err:
            raise typer.BadParameter(str(err))
    return value


@app.command(name="compile")
def compile_(
    spec: Annotated[Path, typer.Argument(help="the spec file")],
    set_: SetOpt = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="save the initial weights (.pt or .safetensors)")] = None,
    emit_python: Annotated[Optional[Path], typer.Option("--emit-python", help="write the generated PyTorch module source here")] = None,
    seed: Annotated[int, typer.Option(help="initialization seed")] = 0,
    dim: DimOpt = None,
    max_params: MaxParams = None,
    target: Annotated[Optional[str], typer.Option("--target", callback=_target_option, help="lower attention for a target: cpu, cuda[:sm90][:bf16], ort-cpu, ort-cuda, auto")] = None,
    mode: Annotated[KernelMode, typer.Option("--mode", help="what the kernels must support: inference or training (backward)")] = KernelMode.inference,
    explain: Annotated[bool, typer.Option("--explain", help="print every attention node's kernel, why, and why each other candidate was rejected")] = False,
) -> None:
    """Compile a spec to a PyTorch module, check a forward pass on random inputs, save weights and/or source."""

    def body() -> int:
        from compilers.torch import build_module, write_python
        from compilers.torch.weights import save_weights
        from nngraph.spec import load_spec

        graph = load_spec(spec, set_ or [], _limits(max_params))
        built = graph
        if target is not None or explain:
            from compilers.passes.cli import lower_for_cli

            built, text = lower_for_cli(graph, target or "auto", mode.value, dim or [], explain)
            typer.echo(text)
        if graph.networks:  # several networks: a ModuleDict of their modules (state keys <network>.<node>...)
            from compilers.torch.networks import build_networks

            module = build_networks(built, seed=seed)
        else:
            module = build_module(built, seed=seed)
        check = _torch_check(graph, dim, seed, module)
        typer.echo(f"compiled {graph.name} ({spec})")
        typer.echo(check["report"])
        if not check["ok"]:
            return 1
        if emit_python:
            class_name = write_python(built, emit_python)
            typer.echo(f"wrote {emit_python} (class {class_name})")
        if output:
            save_weights(module, graph, output)
            typer.echo(f"wrote {output} (fingerprint {graph.fingerprint()})")
        return 0

    run_guarded(body)


@app.command()
def graph(
    spec: Annotated[Path, typer.Argument(help="the spec file")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="out.dot, out.mmd (Mermaid), out.svg or out.png (need Graphviz)")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="dot, mmd, svg or png (default: from the -o suffix; dot on stdout)")] = None,
    set_: SetOpt = None,
    max_params: MaxParams = None,
) -> None:
    """Draw the graph: Graphviz DOT or Mermaid, blocks as clusters, tensor shapes on the edges."""
    from nngraph.draw import FORMATS

    kind = (fmt or (output.suffix.lstrip(".") if output else "dot")).lower()
    if kind not in FORMATS:
        raise typer.BadParameter(f"unknown drawing format '{kind}'; use one of: {', '.join(FORMATS)}",
                                 param_hint="'--format' / '-o' suffix")
    if output is None and kind == "png":
        raise typer.BadParameter("png is binary: give -o FILE.png", param_hint="'-o'")

    def body() -> int:
        from nngraph.draw import DrawError, render, to_dot, to_mermaid
        from nngraph.spec import load_spec

        g = load_spec(spec, set_ or [], _limits(max_params))
        try:
            if output is None:
                if kind == "svg":
                    from nngraph.draw import run_dot

                    sys.stdout.write(run_dot(to_dot(g), "svg").decode("utf-8"))
                else:
                    sys.stdout.write(to_mermaid(g) if kind == "mmd" else to_dot(g))
                return 0
            render(g, output, kind)
        except DrawError as err:
            typer.echo(f"error: {err}", err=True)
            return 1
        typer.echo(f"wrote {output}")
        return 0

    run_guarded(body)


def _write_or_check(output: Optional[Path], text: str, check: bool, regenerate: str) -> int:
    """Write ``text`` to ``output`` (stdout without one), or with ``check`` compare and report staleness."""
    from nngraph.io import write_text_atomic

    if check:
        if output is None:
            typer.echo("error: --check needs -o FILE", err=True)
            return 2
        current = output.read_text(encoding="utf-8") if output.is_file() else None
        if current == text:
            typer.echo(f"up to date: {output}")
            return 0
        typer.echo(f"error: {output} is {'missing' if current is None else 'stale'}; run `{regenerate}`", err=True)
        return 1
    if output is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(output, text)
        typer.echo(f"wrote {output}")
    return 0


@app.command()
def docs(
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write here instead of stdout")] = None,
    check: Annotated[bool, typer.Option("--check", help="do not write: exit 1 if the file differs from what would be written")] = False,
) -> None:
    """Generate the spec reference (Markdown) from the op registry."""

    def body() -> int:
        from nngraph.docs import spec_reference

        return _write_or_check(output, spec_reference(), check, f"nngraph docs -o {output}")

    run_guarded(body)


@app.command()
def train(
    spec: Annotated[Path, typer.Argument(help="the spec file (its train: section configures the run)")],
    data: Annotated[Optional[str], typer.Option("--data", help="a data file, or a built-in dataset: digits, karate, text, copy, reverse, parity")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="optimizer steps (replaces train.steps / train.epochs)")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="passes over the training split")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="output folder (default out/train/NAME)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue exactly from the newest checkpoint in --out")] = False,
    set_: SetOpt = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="seed of initialization, batches, dropout and noise")] = None,
    nproc_per_node: Annotated[int, typer.Option("--nproc-per-node", min=1, help="data-parallel worker processes (torch elastic launcher; gloo on CPU)")] = 1,
    config: Annotated[Optional[Path], typer.Option("--config", help="a YAML file with the train: section (merged over the spec's)")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="print only errors")] = False,
    strategy: Annotated[Optional[str], typer.Option("--strategy", help="data parallel with several processes: ddp or fsdp (sets train.distributed.strategy)")] = None,
) -> None:
    """Train a spec on its train: section: progress, metrics.jsonl, TensorBoard, checkpoints, loss.png."""
    if steps is not None and epochs is not None:
        raise typer.BadParameter("give --steps or --epochs, not both", param_hint="'--steps' / '--epochs'")
    if strategy not in (None, "ddp", "fsdp"):
        raise typer.BadParameter(f"unknown strategy '{strategy}'; use ddp or fsdp", param_hint="'--strategy'")

    def body() -> int:
        from compilers.train import CheckpointError, DataError, train as run_train

        try:
            run_train(spec, out, set_ or [], config, steps, epochs, seed, data, resume, nproc_per_node, typer.echo, quiet,
                      strategy=strategy)
        except (DataError, CheckpointError) as err:
            typer.echo(f"error: {err}", err=True)
            return 1
        return 0

    run_guarded(body)


@app.command()
def sample(
    spec: Annotated[Path, typer.Argument(help="a denoiser spec: predicts the noise ε from the image x_t and the step t")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the image grid to write (PNG)")] = Path("samples.png"),
    weights: Annotated[Optional[Path], typer.Option("--weights", help="trained weights (.pt or .safetensors); default: the seeded initial weights")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="sampling steps, at most --train-steps")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="seed of the sampling noise (and of the initial weights)")] = 0,
    num: Annotated[int, typer.Option("-n", "--num", min=1, help="number of samples in the grid")] = 16,
    sampler: Annotated[str, typer.Option("--sampler", help="ddpm (ancestral) or ddim")] = "ddpm",
    eta: Annotated[float, typer.Option("--eta", min=0.0, help="DDIM noise: 0 deterministic, 1 the DDPM posterior variance")] = 0.0,
    schedule: Annotated[str, typer.Option("--schedule", help="the training noise schedule: linear or cosine")] = "linear",
    train_steps: Annotated[int, typer.Option("--train-steps", min=1, help="diffusion steps T of the training schedule")] = 1000,
    cond: Annotated[Optional[list[str]], typer.Option("--cond", help="NAME=INT for an integer conditioning input, e.g. label=3 (default 0)")] = None,
    set_: SetOpt = None,
    dim: DimOpt = None,
) -> None:
    """Sample images from a diffusion denoiser (DDPM or DDIM) and write them as a PNG grid."""
    if sampler not in ("ddpm", "ddim"):
        raise typer.BadParameter(f"unknown sampler '{sampler}'; use ddpm or ddim", param_hint="'--sampler'")
    if schedule not in ("linear", "cosine"):
        raise typer.BadParameter(f"unknown schedule '{schedule}'; use linear or cosine", param_hint="'--schedule'")

    def body() -> int:
        from compilers.torch.check import parse_dims
        from compilers.torch.diffusion_sampling import sample_to_png
        from nngraph.spec import load_spec

        conds = {}
        for item in cond or []:
            key, _, value = item.partition("=")
            if not key.strip().isidentifier() or not value.strip().lstrip("-").isdigit():
                typer.echo(f"error: --cond '{item}' is not NAME=INT (e.g. --cond label=3)", err=True)
                return 2
            conds[key.strip()] = int(value)
        graph = load_spec(spec, set_ or [])
        for line in sample_to_png(graph, output, weights, steps, seed, num, sampler, eta, schedule, train_steps,
                                  cond=conds, sizes=parse_dims(dim)):
            typer.echo(line, err=line.startswith(("warning", "note")))
        return 0

    run_guarded(body)


@app.command(name="import-weights")
def import_weights(
    spec: Annotated[Path, typer.Argument(help="the spec whose parameter names receive the weights")],
    checkpoint: Annotated[Path, typer.Argument(help="a Hugging Face state dict: .safetensors, .bin/.pt (weights_only), or a folder of shards")],
    source: Annotated[str, typer.Option("--from", help="checkpoint layout: hf-gpt2, hf-bert, hf-llama or hf-t5")],
    output: Annotated[Path, typer.Option("-o", "--output", help="weights file to write (.safetensors or .pt)")],
    set_: SetOpt = None,
) -> None:
    """Map a Hugging Face checkpoint onto a spec's parameter names and save it as nngraph weights."""
    from compilers.torch.hf_import import SOURCES

    if source not in SOURCES:
        raise typer.BadParameter(f"unknown source '{source}'; use one of: {', '.join(SOURCES)}", param_hint="'--from'")

    def body() -> int:
        from compilers.torch import build_module
        from compilers.torch.hf_import import ImportWeightsError, load_hf_state_dict, read_state_dict
        from compilers.torch.weights import save_weights
        from nngraph.spec import load_spec

        graph = load_spec(spec, set_ or [])
        try:
            state = read_state_dict(checkpoint)
            module = build_module(graph)
            converted = load_hf_state_dict(module, graph, source, state)
        except (ImportWeightsError, ValueError, OSError) as err:
            typer.echo(f"error: {err}", err=True)
            return 1
        typer.echo(f"imported {len(state) - len(converted.skipped)} tensors of {checkpoint} ({source}) into "
                   f"{len(converted.tensors)} parameters of {graph.name}")
        for key, why in converted.skipped:
            typer.echo(f"  skipped {key}: {why}")
        save_weights(module, graph, output)
        typer.echo(f"wrote {output} (fingerprint {graph.fingerprint()})")
        return 0

    run_guarded(body)


@app.command()
def export(
    spec: Annotated[Path, typer.Argument(help="the spec file")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="the .onnx file to write (atomically)")] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="weights (.safetensors/.pt), a training checkpoint (LoRA merged) or a training output folder; default: seeded initial weights")] = None,
    target: Annotated[str, typer.Option("--target", help="ort-cpu, ort-cuda (ONNX Runtime contrib kernels allowed) or onnx (standard ops only)")] = "ort-cpu",
    opset: Annotated[Optional[int], typer.Option("--opset", help="ONNX opset, 17..23 (default 23; the fused Attention op needs 23)")] = None,
    dynamic: Annotated[Optional[str], typer.Option("--dynamic", help="comma-separated dims that stay dynamic, e.g. batch,seq (default: every symbolic input dim)")] = None,
    dim: DimOpt = None,
    kv_cache: Annotated[bool, typer.Option("--kv-cache", help="add past/present key-value inputs/outputs per attention layer (for generate)")] = False,
    optional_inputs: Annotated[bool, typer.Option("--optional-inputs", help="also export the spec's optional inputs (e.g. an RNN's initial state)")] = False,
    kernel: Annotated[Optional[list[str]], typer.Option("--kernel", help="force an attention kernel: NAME for all nodes or NODE=NAME (decomposed, onnx-attention, ort-mha, ort-gqa)")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="show the kernel chosen for every attention node and why (without -o: only that)")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="compare ONNX Runtime with torch at two sizes before writing")] = True,
    tolerance: Annotated[float, typer.Option("--tolerance", help="--verify allows max |ORT - torch| <= tolerance * max(1, max |torch output|)")] = 1e-4,
    set_: SetOpt = None,
    seed: Annotated[int, typer.Option(help="initialization seed (without --weights) and of the check inputs")] = 0,
    network: Annotated[Optional[str], typer.Option("--network", help="a spec with several networks: export this one (default: all of them in one file)")] = None,
) -> None:
    """Export a spec to ONNX with fused attention kernels; checked, with metadata, written atomically."""

    def body() -> int:
        from compilers.onnx.commands import export_command

        return export_command(spec, output, weights=weights, target=target, opset=opset, dynamic=dynamic, dims=dim,
                              kv_cache=kv_cache, kernels=kernel, explain=explain, verify=verify, tolerance=tolerance,
                              overrides=set_ or [], seed=seed, echo=typer.echo, include_optional=optional_inputs,
                              **({"network": network} if network else {}))

    run_guarded(body)


@app.command()
def infer(
    model: Annotated[Path, typer.Argument(help="the .onnx file")],
    input_: Annotated[Optional[list[str]], typer.Option("--input", "-i", help="NAME=FILE (.npy, .npz or .json), repeatable")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write all outputs to this .npz")] = None,
    target: Annotated[str, typer.Option("--target", help="ort-cpu or ort-cuda (execution providers)")] = "ort-cpu",
) -> None:
    """Run an ONNX model with ONNX Runtime on inputs from files; checks names, shapes and dtypes first."""

    def body() -> int:
        from compilers.onnx.commands import infer_command

        return infer_command(model, input_ or [], output, target, typer.echo)

    run_guarded(body)


@app.command()
def generate(
    model: Annotated[Path, typer.Argument(help="an .onnx decoder exported with --kv-cache, or a decoder spec (.yaml: exported first)")],
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", help="comma-separated token ids, one row per --prompt")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option("--prompt-file", help="token ids [batch, length] (.npy, .npz, .json)")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", min=1, help="tokens to generate")] = 20,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, help="sample among the k most likely tokens (default: greedy)")] = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="softmax temperature for --top-k")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="sampling seed")] = 0,
    eos: Annotated[Optional[int], typer.Option("--eos", help="stop a row at this token id")] = None,
    target: Annotated[str, typer.Option("--target", help="ort-cpu or ort-cuda")] = "ort-cpu",
    weights: Annotated[Optional[Path], typer.Option("--weights", help="weights for a spec argument")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write the token ids as JSON")] = None,
    set_: SetOpt = None,
) -> None:
    """Generate tokens with an ONNX decoder (greedy or top-k), the KV cache as ONNX inputs/outputs."""

    def body() -> int:
        from compilers.onnx.commands import generate_command

        return generate_command(model, prompt or [], prompt_file, max_new_tokens, top_k=top_k, temperature=temperature,
                                seed=seed, eos=eos, target=target, weights=weights, overrides=set_ or [],
                                output=output, echo=typer.echo)

    run_guarded(body)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
