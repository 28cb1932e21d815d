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


if _invoked_command() in _FAST_COMMANDS and "--help" not in sys.argv:
    # `validate` runs in CI and pre-commit on every commit and must start in well under 0.5 s
    # (bench/validate_speed.py). typer imports rich eagerly (~150 ms) just for pretty help and
    # errors; validate prints plain text, so hide rich from typer for this command.
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]

import typer  # noqa: E402

from nngraph.train_keys import BUILTINS  # noqa: E402  (torch-free: names for --data's help)

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


def _finite(value: Optional[float]) -> Optional[float]:
    """A number option's value, unless it is NaN or infinite (click's range check compares, and ``nan < 0`` is False)."""
    from nngraph.params import range_problem

    problem = None if value is None else range_problem(value, None, None)
    if problem:
        raise typer.BadParameter(problem)
    return value


SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override: NAME=v (a var), graph.PATH.PARAM=v (PATH may hold *: graph.layers.*.mlp.hidden), blocks.BLOCK[.NODE].PARAM=v, train.KEY=v (repeatable)")]
DimOpt = Annotated[Optional[list[str]], typer.Option("--dim", help="size of a symbolic dim for random inputs: NAME=INT (repeatable)")]
MaxParams = Annotated[Optional[int], typer.Option("--max-params", help="refuse models with more parameters than this")]
MaxMemory = Annotated[Optional[float], typer.Option("--max-memory", min=0.001, callback=_finite,
                                                    help="GB the weights and each input may take (default: this machine's physical memory)")]


def _print_version(value: bool) -> None:
    """--version: the installed nngraph's version, then exit."""
    if value:
        from nngraph import __version__

        typer.echo(f"nngraph {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="show Python tracebacks for internal errors")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    _STATE["debug"] = debug


def run_guarded(fn: Callable[[], int | None], extra: str | None = None) -> None:
    """Run a command body: SpecError -> formatted diagnostics and exit 1; other errors -> one line, exit 1.

    ``extra``: the optional extra the command comes with, named when a module it brings is missing."""
    from nngraph.errors import SpecError, format_text

    try:
        code = fn() or 0
    except SpecError as err:
        typer.echo(format_text(err.diagnostics), err=True)
        raise typer.Exit(1)
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except BrokenPipeError:
        # the reader went away (`nngraph zoo list | head`): stop quietly, as Python's docs advise
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1)
    except ModuleNotFoundError as exc:
        from nngraph.extras import missing_extra_message

        message = missing_extra_message(exc.name or "", extra)
        if message is None or _STATE["debug"]:
            raise
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: no tracebacks for users
        if _STATE["debug"]:
            raise
        # the notes say where in the spec it happened (``in node 'dec3.cat' (concat) at x.yaml:40:5``)
        notes = "".join(f"\n  {note}" for note in getattr(exc, "__notes__", ()))
        typer.echo(f"error: {type(exc).__name__}: {exc}{notes}\n  (run with --debug for the traceback)", err=True)
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
    max_memory: MaxMemory = None,
) -> None:
    """Check specs: schema, references, cycles, shapes and dtypes. Reports every error in every file."""

    def body() -> int:
        from nngraph.commands import limits, validate_files

        return validate_files(paths, set_ or [], fmt.value, strict, quiet, limits(max_params, max_memory, builds=False),
                              typer.echo)

    run_guarded(body)


@app.command()
def schema(
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write here instead of stdout")] = None,
    check: Annotated[bool, typer.Option("--check", help="do not write: exit 1 if the file differs from what would be written")] = False,
) -> None:
    """Print (or write) the JSON Schema for spec files, generated from the op registry."""

    def body() -> int:
        from nngraph.commands import write_or_check
        from nngraph.schema import json_schema

        text = json.dumps(json_schema(), indent=2) + "\n"
        return write_or_check(output, text, check, f"nngraph schema -o {output}", typer.echo)

    run_guarded(body)


@app.command()
def ops(family: Annotated[Optional[str], typer.Option(help="only this family")] = None) -> None:
    """List every primitive, by family, with its parameters."""

    def body() -> int:
        from nngraph.commands import list_ops

        return list_ops(family, typer.echo)

    run_guarded(body)


class InspectFormat(str, Enum):
    """Output formats of ``inspect``."""

    text = "text"
    json = "json"


@app.command()
def inspect(
    spec: Annotated[Path, typer.Argument(help="the spec file")],
    set_: SetOpt = None,
    fmt: Annotated[InspectFormat, typer.Option("--format", help="text (a table) or json")] = InspectFormat.text,
    max_params: MaxParams = None,
    max_memory: MaxMemory = None,
    torch_check: Annotated[bool, typer.Option("--torch", help="also compile with PyTorch: real parameter count and a forward check on random inputs")] = False,
    dim: DimOpt = None,
) -> None:
    """Show every node: op, output shape(s) and parameter count, with block subtotals and the total."""

    def body() -> int:
        from nngraph.commands import inspect_text, limits, show_warnings
        from nngraph.inspect import summarize
        from nngraph.limits import parse_dims
        from nngraph.spec import load_spec

        try:
            parse_dims(dim)  # a bad --dim is a usage error before anything is built (as in compile and export)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            return 2
        graph = load_spec(spec, set_ or [], limits(max_params, max_memory, builds=torch_check), on_warning=show_warnings)
        summary = summarize(graph)
        check = None
        if torch_check:
            from nngraph.compilers.torch.commands import torch_check as run_torch_check

            check = run_torch_check(graph, dim)
        if check is not None:
            summary["torch"] = check
        if fmt == InspectFormat.json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            text = inspect_text(summary, want_rich=sys.stdout.isatty())
            if text is not None:
                typer.echo(text)
            if check is not None:
                typer.echo(check["report"])
        return 0 if check is None or check["ok"] else 1

    run_guarded(body)


class KernelMode(str, Enum):
    """What lowered attention kernels must support."""

    inference = "inference"
    training = "training"


def _target_option(value: Optional[str]) -> Optional[str]:
    """--target: a known target string (usage error otherwise); a profile file (``*.json``) is read by the command,
    which reports its problems at their line."""
    from nngraph.compilers.targets.profile_file import is_profile_file

    if value is not None and not is_profile_file(value):
        from nngraph.compilers.targets import TargetError, get_target

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
    max_memory: MaxMemory = None,
    target: Annotated[Optional[str], typer.Option("--target", callback=_target_option, help="lower attention for a target: cpu, cuda[:sm90][:bf16], ort-cpu, ort-cuda, auto")] = None,
    mode: Annotated[KernelMode, typer.Option("--mode", help="what the kernels must support: inference or training (backward)")] = KernelMode.inference,
    explain: Annotated[bool, typer.Option("--explain", help="print every attention node's kernel, why, and why each other candidate was rejected")] = False,
) -> None:
    """Compile a spec to a PyTorch module, check a forward pass on random inputs, save weights and/or source."""

    def body() -> int:
        from nngraph.compilers.passes.cli import lower_for_cli
        from nngraph.compilers.torch.commands import compile_command
        from nngraph.commands import limits

        return compile_command(spec, set_ or [], limits(max_params, max_memory), output=output, emit_python=emit_python, seed=seed,
                               dim=dim or [], target=target, mode=mode.value, explain=explain, echo=typer.echo,
                               lower=lower_for_cli)

    run_guarded(body)


@app.command()
def cost(
    spec: Annotated[Path, typer.Argument(help="the spec file")],
    set_: SetOpt = None,
    target: Annotated[Optional[str], typer.Option("--target", callback=_target_option, help="estimate time on this target (a profile with a roofline: cpu, cuda[:sm90][:bf16])")] = None,
    dim: Annotated[Optional[list[str]], typer.Option("--dim", help="size of a symbolic dim: NAME=INT (repeatable; others default to 128, batch to 1)")] = None,
    mode: Annotated[KernelMode, typer.Option("--mode", help="inference (peak live tensors) or training (backward, activations, optimizer state)")] = KernelMode.inference,
    batch: Annotated[Optional[int], typer.Option("--batch", min=1, help="the batch size (same as --dim batch=N)")] = None,
    fmt: Annotated[InspectFormat, typer.Option("--format", help="text (tables) or json")] = InspectFormat.text,
) -> None:
    """What the model costs, without running it: params and bytes, FLOPs, memory, KV cache, time per target."""

    def body() -> int:
        from nngraph.commands import cost_command

        return cost_command(spec, set_ or [], dim, batch, mode.value, target, fmt.value, typer.echo)

    run_guarded(body)


@app.command()
def view(
    spec: Annotated[Path, typer.Argument(help="the spec file")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the HTML file to write")] = Path("graph.html"),
    set_: SetOpt = None,
    target: Annotated[Optional[str], typer.Option("--target", callback=_target_option, help="show each node's kernel and why on this target")] = None,
    dim: Annotated[Optional[list[str]], typer.Option("--dim", help="size of a symbolic dim: NAME=INT (repeatable)")] = None,
) -> None:
    """Interactive graph in one offline HTML file: top-to-bottom layers, collapsible blocks with their totals,
    per-node cost, search; validate's errors and warnings on their nodes (errors: the page is written, exit 1)."""

    def body() -> int:
        from nngraph.commands import view_command

        return view_command(spec, output, set_ or [], dim, target, typer.echo)

    run_guarded(body)


@app.command(name="diff")
def diff_(
    a: Annotated[Path, typer.Argument(help="the old spec")],
    b: Annotated[Path, typer.Argument(help="the new spec")],
    dim: Annotated[Optional[list[str]], typer.Option("--dim", help="size of a symbolic dim for the FLOP deltas: NAME=INT (repeatable)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text, json or md (Markdown, for a pull-request comment)")] = "text",
    fail_on: Annotated[Optional[list[str]], typer.Option("--fail-on", help="exit 1 when this changed: params or shapes (repeatable)")] = None,
) -> None:
    """Semantic diff of two specs: nodes added/removed/renamed/changed, parameter and FLOP deltas per block."""
    if fmt not in ("text", "json", "md"):
        raise typer.BadParameter(f"unknown format '{fmt}'; use text, json or md", param_hint="'--format'")
    bad = [x for x in fail_on or [] if x not in ("params", "shapes")]
    if bad:
        raise typer.BadParameter(f"unknown kind '{bad[0]}'; use params or shapes", param_hint="'--fail-on'")

    def body() -> int:
        from nngraph.commands import diff_command

        return diff_command(a, b, dim, fmt, fail_on or [], typer.echo)

    run_guarded(body)


@app.command()
def calibrate(
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="also write the profile here (FILE.json, written atomically): use it with `nngraph cost SPEC --target FILE.json`")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="tiny sizes, well under a second: a smoke test, not a calibration")] = False,
    cpu_time: Annotated[bool, typer.Option("--cpu-time", help="time by the process's CPU time per thread, not the wall clock (a machine busy with other work)")] = False,
) -> None:
    """Measure this CPU's roofline (peak FLOP/s per dtype, FLOP/s against product size, bandwidth, node cost) as a target profile."""
    from nngraph.compilers.targets.profile_file import SUFFIX, is_profile_file

    if output is not None and not is_profile_file(str(output)):
        raise typer.BadParameter(f"'{output}' does not end in {SUFFIX}: --target reads a profile file by that suffix",
                                 param_hint="'-o'")

    def body() -> int:
        from nngraph.io import write_text_atomic
        from nngraph.outputs import check_output

        check_output(output, [])  # before measuring: a refusal costs nothing
        from nngraph.compilers.targets.calibrate import FULL, QUICK, profile

        text = json.dumps(profile(QUICK if quick else FULL, "cpu" if cpu_time else "wall"), indent=2) + "\n"
        typer.echo(text, nl=False)
        if output is not None:
            write_text_atomic(output, text)
            typer.echo(f"wrote {output} (use it with `nngraph cost SPEC --target {output}`)", err=True)
        return 0

    run_guarded(body)


@app.command()
def graph(
    spec: Annotated[Path, typer.Argument(help="the spec file")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="out.dot, out.mmd (Mermaid), out.svg or out.png (need Graphviz)")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="dot, mmd, svg or png (default: from the -o suffix; dot on stdout)")] = None,
    set_: SetOpt = None,
    max_params: MaxParams = None,
    max_memory: MaxMemory = None,
    collapse: Annotated[bool, typer.Option("--collapse", help="draw each repeated block use as one node (NAME: BLOCK ×N)")] = False,
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
        from nngraph.commands import draw_command, limits

        return draw_command(spec, output, kind, set_ or [], limits(max_params, max_memory, builds=False), typer.echo,
                            collapse=collapse)

    run_guarded(body)


@app.command()
def docs(
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write here instead of stdout")] = None,
    check: Annotated[bool, typer.Option("--check", help="do not write: exit 1 if the file differs from what would be written")] = False,
    train_keys: Annotated[bool, typer.Option("--train", help="the train reference (docs/train-reference.md) instead, "
                                                            "from the train key registry")] = False,
) -> None:
    """Generate the spec reference (Markdown) from the op registry, or with --train the train reference."""

    def body() -> int:
        from nngraph.commands import write_or_check

        if train_keys:
            from nngraph.docs_train import train_reference

            return write_or_check(output, train_reference(), check, f"nngraph docs --train -o {output}", typer.echo)
        from nngraph.docs import spec_reference

        return write_or_check(output, spec_reference(), check, f"nngraph docs -o {output}", typer.echo)

    run_guarded(body)


@app.command()
def train(
    spec: Annotated[Path, typer.Argument(help="the spec file (its train: section configures the run)")],
    data: Annotated[Optional[str], typer.Option("--data", help="a data file, or a built-in dataset: " + ", ".join(BUILTINS))] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="optimizer steps (replaces train.steps / train.epochs)")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="passes over the training split")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="output folder (default out/train/NAME)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue exactly from the newest checkpoint in --out")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="train into a --out that holds other files (replacing them); with --resume: start again from step 0 when no checkpoint verifies")] = False,
    set_: SetOpt = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="seed of initialization, batches, dropout and noise")] = None,
    nproc_per_node: Annotated[int, typer.Option("--nproc-per-node", min=1, help="data-parallel worker processes (torch elastic launcher; gloo on CPU)")] = 1,
    config: Annotated[Optional[Path], typer.Option("--config", help="a YAML file with the train: section (merged over the spec's)")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="print only errors")] = False,
    strategy: Annotated[Optional[str], typer.Option("--strategy", help="data parallel with several processes: ddp or fsdp (sets train.distributed.strategy)")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="MODULE:FUNCTION returning your own torch Dataset (items (x, y) or dicts of fields; or a dict of train/val/test datasets); imported from the current folder")] = None,
) -> None:
    """Train a spec on its train: section: progress, metrics.jsonl, TensorBoard, checkpoints, loss.png."""
    if steps is not None and epochs is not None:
        raise typer.BadParameter("give --steps or --epochs, not both", param_hint="'--steps' / '--epochs'")
    if strategy not in (None, "ddp", "fsdp"):
        raise typer.BadParameter(f"unknown strategy '{strategy}'; use ddp or fsdp", param_hint="'--strategy'")

    def body() -> int:
        from nngraph.compilers.train import CheckpointError, DataError, TrainingInterrupted, train as run_train

        try:
            run_train(spec, out, set_ or [], config, steps, epochs, seed, data, resume, nproc_per_node, typer.echo, quiet,
                      strategy=strategy, overwrite=overwrite, dataset=dataset)
        except (DataError, CheckpointError) as err:
            typer.echo(f"error: {err}", err=True)
            return 1
        except TrainingInterrupted as stop:  # SIGINT/SIGTERM: checkpoint written; 130 / 143 like a killed command
            typer.echo(str(stop), err=True)
            return stop.exit_code
        return 0

    run_guarded(body)


@app.command()
def tune(
    spec: Annotated[Path, typer.Argument(help="the spec to train in each trial (its train: section)")],
    space: Annotated[list[str], typer.Option("--space", help="KEY=DIST(ARGS), repeatable: train.optimizer.lr=loguniform(1e-4,1e-2), vars.d_model=choice(64,128), int(lo,hi), uniform(lo,hi)")],
    trials: Annotated[int, typer.Option("--trials", min=1, help="trials to add to the study (a second run adds more)")] = 10,
    metric: Annotated[str, typer.Option("--metric", help="the summary metric to optimize: val_loss, val_accuracy, test_loss, ...")] = "val_loss",
    direction: Annotated[Optional[str], typer.Option("--direction", help="minimize or maximize (default: maximize for accuracy, else minimize)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="folder of the study and its trials (default out/tune/NAME)")] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help="Optuna RDB storage URL shared by several machines (default sqlite:///OUT/study.db)")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="study name (default: the spec's file name)")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="trials run at once, each in its own process")] = 1,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="optimizer steps of each trial (replaces train.steps)")] = None,
    set_: SetOpt = None,
) -> None:
    """Search hyperparameters with Optuna: trials of `nngraph train`, pruned on their val metrics; a table, a plot
    and the best trial's run folder."""
    from nngraph.tune_space import SpaceError, parse_space

    if direction not in (None, "minimize", "maximize"):
        raise typer.BadParameter(f"unknown direction '{direction}'; use minimize or maximize", param_hint="'--direction'")
    try:
        params = [parse_space(text) for text in space]
    except SpaceError as err:
        raise typer.BadParameter(str(err), param_hint="'--space'") from None

    def body() -> int:
        from nngraph.compilers.train.tune import tune as run_tune

        run_tune(spec, out or Path("out") / "tune" / spec.stem, params, trials, metric, direction, storage, study,
                 workers, set_ or [], steps, typer.echo)
        return 0

    run_guarded(body)


@app.command()
def sample(
    spec: Annotated[Path, typer.Argument(help="a denoiser spec: predicts the noise ε from the image x_t and the step t; or a training run folder (its spec, --set overrides, weights and schedule)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the image grid to write (PNG)")] = Path("samples.png"),
    weights: Annotated[Optional[Path], typer.Option("--weights", help="trained weights (.pt or .safetensors); default: a run folder's, else the seeded initial weights")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="sampling steps, at most --train-steps")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="seed of the sampling noise (and of the initial weights)")] = 0,
    num: Annotated[int, typer.Option("-n", "--num", min=1, help="number of samples in the grid")] = 16,
    sampler: Annotated[str, typer.Option("--sampler", help="ddpm (ancestral) or ddim")] = "ddpm",
    eta: Annotated[float, typer.Option("--eta", min=0.0, callback=_finite, help="DDIM noise: 0 deterministic, 1 the DDPM posterior variance")] = 0.0,
    schedule: Annotated[Optional[str], typer.Option("--schedule", help="the training noise schedule: linear or cosine (default: a run folder's, else linear)")] = None,
    train_steps: Annotated[Optional[int], typer.Option("--train-steps", min=1, help="diffusion steps T of the training schedule (default: a run folder's, else 1000)")] = None,
    cond: Annotated[Optional[list[str]], typer.Option("--cond", help="NAME=INT for an integer conditioning input, e.g. label=3 (default 0)")] = None,
    set_: SetOpt = None,
    dim: DimOpt = None,
) -> None:
    """Sample images from a diffusion denoiser (DDPM or DDIM) and write them as a PNG grid."""
    if sampler not in ("ddpm", "ddim"):
        raise typer.BadParameter(f"unknown sampler '{sampler}'; use ddpm or ddim", param_hint="'--sampler'")
    if schedule not in (None, "linear", "cosine"):
        raise typer.BadParameter(f"unknown schedule '{schedule}'; use linear or cosine", param_hint="'--schedule'")

    def body() -> int:
        from nngraph.compilers.torch.commands import sample_command

        return sample_command(spec, output, weights, steps, seed, num, sampler, eta, schedule, train_steps, cond or [],
                              set_ or [], dim or [], typer.echo)

    run_guarded(body)


@app.command(name="import-weights")
def import_weights(
    spec: Annotated[Path, typer.Argument(help="the spec whose parameter names receive the weights")],
    checkpoint: Annotated[Path, typer.Argument(help="a Hugging Face state dict: .safetensors, .bin/.pt (weights_only), or a folder of shards")],
    source: Annotated[str, typer.Option("--from", help="checkpoint layout, e.g. hf-gpt2, hf-llama, hf-t5 (an unknown name is refused with the full list)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="weights file to write (.safetensors or .pt)")],
    set_: SetOpt = None,
) -> None:
    """Map a Hugging Face checkpoint onto a spec's parameter names and save it as nngraph weights."""
    from nngraph.compilers.torch.hf_import import SOURCES

    if source not in SOURCES:
        raise typer.BadParameter(f"unknown source '{source}'; use one of: {', '.join(SOURCES)}", param_hint="'--from'")

    def body() -> int:
        from nngraph.compilers.torch.commands import import_weights_command

        return import_weights_command(spec, checkpoint, source, output, set_ or [], typer.echo)

    run_guarded(body)


@app.command(name="import-hf")
def import_hf(
    model: Annotated[str, typer.Argument(help="a Hugging Face model folder (config.json + weights) or a Hub id org/name")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder to write the spec and weights.safetensors into")],
) -> None:
    """Generate a spec from a Hugging Face config.json (every size from it) and convert its weights."""

    def body() -> int:
        from nngraph.compilers.torch.hf_folder import import_hf_command

        return import_hf_command(model, output, typer.echo)

    run_guarded(body, extra="hf")


@app.command(name="export-hf")
def export_hf(
    model: Annotated[Path, typer.Argument(help="a spec of a known family (GPT-2, BERT, RoBERTa, RoBERTa MLM, LLaMA, Mistral, Qwen2, Gemma, GPT-NeoX, T5 v1.0/v1.1) or a training run folder")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for config.json and model.safetensors (from_pretrained loads it)")],
    weights: Annotated[Optional[Path], typer.Option("--weights", help="weights (.safetensors/.pt); default: the run folder's, else seeded initial weights")] = None,
    set_: SetOpt = None,
) -> None:
    """Write a spec of a known family as a Hugging Face model folder (config.json + model.safetensors)."""

    def body() -> int:
        from nngraph.compilers.torch.hf_export import export_hf_command

        return export_hf_command(model, output, weights, set_ or [], typer.echo)

    run_guarded(body, extra="hf")


@app.command()
def export(
    spec: Annotated[Path, typer.Argument(help="the spec file, or a training run folder (its spec, --set overrides and weights)")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="the .onnx file to write (atomically)")] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="weights (.safetensors/.pt), a training checkpoint (LoRA merged) or a training output folder; default: seeded initial weights")] = None,
    target: Annotated[str, typer.Option("--target", help="ort-cpu, ort-cuda (ONNX Runtime contrib kernels allowed) or onnx (standard ops only)")] = "ort-cpu",
    opset: Annotated[Optional[int], typer.Option("--opset", help="ONNX opset, 17..23 (default: the lowest the chosen kernels and ops need, e.g. 17 for an MLP or CNN, 23 with the standard Attention op)")] = None,
    dynamic: Annotated[Optional[str], typer.Option("--dynamic", help="comma-separated dims that stay dynamic, e.g. batch,seq (default: every symbolic input dim)")] = None,
    dim: DimOpt = None,
    kv_cache: Annotated[bool, typer.Option("--kv-cache", help="add past/present key-value inputs/outputs per attention layer (for generate)")] = False,
    optional_inputs: Annotated[bool, typer.Option("--optional-inputs", help="also export the spec's optional inputs (e.g. an RNN's initial state)")] = False,
    kernel: Annotated[Optional[list[str]], typer.Option("--kernel", help="force an attention kernel: NAME for all nodes or NODE=NAME (decomposed, onnx-attention, ort-mha, ort-gqa)")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="show the kernel chosen for every attention node and why (without -o: only that)")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="compare ONNX Runtime with torch at two sizes before writing")] = True,
    tolerance: Annotated[Optional[float], typer.Option("--tolerance", callback=_finite, help="--verify allows max |ORT - torch| <= tolerance * max(1, max |torch output|) (default 1e-4; 1e-2 with --dtype float16)")] = None,
    set_: SetOpt = None,
    seed: Annotated[int, typer.Option(help="initialization seed (without --weights) and of the check inputs")] = 0,
    network: Annotated[Optional[str], typer.Option("--network", help="a spec with several networks: export this one (default: all of them in one file)")] = None,
    fuse: Annotated[Optional[str], typer.Option("--fuse", help="ONNX Runtime fusions: none, all, or a comma list of skip_layer_norm,bias_gelu,packed_qkv,mha_bias (default: ort-cpu bias_gelu; ort-cuda skip_layer_norm,bias_gelu,mha_bias)")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="float32, or float16 (weights and activations; float32 inputs/outputs)")] = "float32",
    external_data: Annotated[Optional[bool], typer.Option("--external-data/--no-external-data", help="weights in OUT.data beside the file (default: when over 2 GB)")] = None,
    expected_seq: Annotated[Optional[int], typer.Option("--expected-seq", min=1, help="the sequence length the file will mostly see: picks the attention kernel measured fastest there")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option("--tokenizer", help="a tokenizer.json to store in the file's metadata (default: the training run's)")] = None,
    triton: Annotated[Optional[Path], typer.Option("--triton", help="write a Triton Inference Server model repository here (DIR/NAME/config.pbtxt, DIR/NAME/1/model.onnx) instead of -o")] = None,
    triton_max_batch: Annotated[int, typer.Option("--triton-max-batch", min=1, help="--triton: max_batch_size of the config (dynamic batching)")] = 16,
) -> None:
    """Export a spec to ONNX with fused attention kernels; checked, with metadata, written atomically."""

    def body() -> int:
        from nngraph.compilers.onnx.commands import export_command

        return export_command(spec, output, weights=weights, target=target, opset=opset, dynamic=dynamic, dims=dim,
                              kv_cache=kv_cache, kernels=kernel, explain=explain, verify=verify, tolerance=tolerance,
                              overrides=set_ or [], seed=seed, echo=typer.echo, include_optional=optional_inputs,
                              **({"network": network} if network else {}), fuse=fuse, dtype=dtype,
                              external_data=external_data, expected_seq=expected_seq, tokenizer=tokenizer,
                              triton=triton, triton_max_batch=triton_max_batch)

    run_guarded(body)


@app.command()
def infer(
    model: Annotated[Path, typer.Argument(help="the .onnx file, or a training run folder (exported first)")],
    input_: Annotated[Optional[list[str]], typer.Option("--input", "-i", help="NAME=FILE (.npy, .npz or .json), repeatable")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write all outputs to this .npz")] = None,
    target: Annotated[str, typer.Option("--target", help="ort-cpu or ort-cuda (execution providers)")] = "ort-cpu",
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="ONNX Runtime intra-op threads (default: ORT's, one per core)")] = None,
    opt_level: Annotated[str, typer.Option("--opt-level", help="ORT graph optimizations: all, extended, basic or disable")] = "all",
    spin: Annotated[Optional[bool], typer.Option("--spin/--no-spin", help="let idle ORT threads spin (lower latency, burns CPU; default: ORT's)")] = None,
) -> None:
    """Run an ONNX model with ONNX Runtime on inputs from files; checks names, shapes and dtypes first."""

    def body() -> int:
        from nngraph.compilers.onnx.commands import infer_command

        return infer_command(model, input_ or [], output, target, typer.echo, threads=threads, opt_level=opt_level,
                             spin=spin)

    run_guarded(body)


@app.command()
def generate(
    model: Annotated[Path, typer.Argument(help="an .onnx decoder exported with --kv-cache, or a decoder spec (.yaml) or training run folder (exported first)")],
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", help="prompt text, one row per --prompt (the model's tokenizer.json, or --tokenizer)")] = None,
    ids: Annotated[Optional[list[str]], typer.Option("--ids", help="a prompt as comma-separated token ids, one row per --ids")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option("--tokenizer", help="tokenizer.json for --prompt text (default: the run's, or the one in the ONNX metadata or beside the file)")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option("--prompt-file", help="prompt token ids [batch, length] (.npy, .npz, .json)")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", min=1, help="tokens to generate")] = 20,
    sample: Annotated[bool, typer.Option("--sample", help="draw tokens from the softmax (on by itself with --top-k or --top-p; default: greedy)")] = False,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, callback=_finite, help="sampling: logits / T (0: greedy)")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, help="sample among the k most likely tokens")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", min=0.0, max=1.0, help="sample from the smallest set of tokens whose probability reaches p (nucleus)")] = None,
    repetition_penalty: Annotated[float, typer.Option("--repetition-penalty", min=0.0, callback=_finite, help="> 1 discourages tokens already in the row (greedy too)")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="sampling seed (same seed, same tokens)")] = 0,
    eos: Annotated[Optional[list[int]], typer.Option("--eos", help="a stop token id: a row stops after producing it (repeatable)")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="print tokens as they are generated")] = False,
    target: Annotated[str, typer.Option("--target", help="ort-cpu or ort-cuda")] = "ort-cpu",
    weights: Annotated[Optional[Path], typer.Option("--weights", help="weights for a spec argument")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write the token ids (and text) as JSON")] = None,
    set_: SetOpt = None,
    source: Annotated[Optional[list[str]], typer.Option("--source", help="encoder-decoder: source token ids, comma-separated, one row per --source")] = None,
    input_: Annotated[Optional[list[str]], typer.Option("--input", "-i", help="encoder-decoder: another source input NAME=FILE (default for a [batch] lengths input: no padding)")] = None,
    kernel: Annotated[Optional[list[str]], typer.Option("--kernel", help="a spec argument: force an attention kernel, NAME or NODE=NAME (as export --kernel)")] = None,
) -> None:
    """Generate tokens with an ONNX decoder (greedy, or sampled with temperature, top-k, top-p, repetition
    penalty), the KV cache as ONNX inputs/outputs; an encoder-decoder runs its encoder once on --source."""

    def body() -> int:
        from nngraph.compilers.onnx.generate_cli import generate_command

        sampling = {"max_new_tokens": max_new_tokens, "do_sample": sample or top_k is not None or top_p is not None,
                    "temperature": temperature, "top_k": top_k, "top_p": top_p,
                    "repetition_penalty": repetition_penalty, "seed": seed, "stop_tokens": tuple(eos or ())}
        return generate_command(model, prompt or [], prompt_file, sampling, ids=ids or [], tokenizer=tokenizer,
                                stream=stream, target=target, weights=weights, overrides=set_ or [],
                                output=output, echo=typer.echo, source=source or [], inputs=input_ or [],
                                kernels=kernel or [])

    run_guarded(body)


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="an .onnx file, a spec (.yaml) or a training run folder (exported first)")],
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port")] = 8000,
    target: Annotated[str, typer.Option("--target", help="ort-cpu or ort-cuda")] = "ort-cpu",
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="ONNX Runtime intra-op threads of each instance (default: the cores shared out among the instances)")] = None,
    instances: Annotated[int, typer.Option("--instances", min=1, help="model instances, each running its own batches (a request that arrives while one runs starts on a free one)")] = 1,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="rows per dynamic batch (1: every request alone)")] = 16,
    window_ms: Annotated[float, typer.Option("--batch-window", min=0.0, callback=_finite, help="ms a batch waits for one more request, when its first found the model idle (default 0: a batch is what arrived while the model ran)")] = 0.0,
    max_wait_ms: Annotated[float, typer.Option("--max-wait", min=0.0, callback=_finite, help="ms a batch stays open at most after its first request arrived")] = 10.0,
    queue_size: Annotated[int, typer.Option("--queue-size", min=1, help="requests admitted and not yet answered (then 503)")] = 256,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1, help="requests handled at once (then 503)")] = 128,
    max_body_mb: Annotated[float, typer.Option("--max-body", min=0.001, callback=_finite, help="MB a request body may have (then 413)")] = 16.0,
    timeout: Annotated[float, typer.Option("--timeout", min=0.001, callback=_finite, help="seconds until an unanswered request gets 504")] = 30.0,
    read_timeout: Annotated[float, typer.Option("--read-timeout", min=0.001, callback=_finite, help="seconds a body may take to arrive (then 408)")] = 10.0,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="the most tokens one /v1/generate request may ask for")] = 256,
    generate_: Annotated[bool, typer.Option("--generate", help="a spec or run folder: also export it with a KV cache for /v1/generate")] = False,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="weights for a spec argument")] = None,
    set_: SetOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level (info shows each request)")] = "warning",
    spin: Annotated[bool, typer.Option("--spin/--no-spin", help="let idle ORT threads spin between runs (they then take CPU from the request handling)")] = False,
    tokenizer: Annotated[Optional[Path], typer.Option("--tokenizer", help="/v1/generate: a tokenizer.json for text prompts (default: the run folder's, the model's metadata, or one beside it)")] = None,
) -> None:
    """Serve a model over HTTP: /v1/infer with dynamic batching, /v1/generate (server-sent events), /health,
    /metadata, /metrics (Prometheus). SIGTERM drains the requests in flight and exits 0."""

    def body() -> int:
        from nngraph.compilers.serve.app import Limits
        from nngraph.compilers.serve.server import serve_command

        limits = Limits(max_batch=max_batch, window=window_ms / 1000, max_wait=max_wait_ms / 1000,
                        queue_size=queue_size, max_concurrency=max_concurrency, max_body=int(max_body_mb * 1e6),
                        timeout=timeout, read_timeout=read_timeout, max_new_tokens=max_new_tokens)
        return serve_command(model, host=host, port=port, target=target, threads=threads, limits=limits,
                             generate=generate_, overrides=set_ or [], weights=weights, echo=typer.echo,
                             log_level=log_level, spin=spin, tokenizer=tokenizer, instances=instances)

    run_guarded(body)


zoo_app = typer.Typer(help="The specs nngraph ships: list them, copy one to start from.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("list")
def zoo_list() -> None:
    """List every shipped spec with the system it builds."""

    def body() -> int:
        from nngraph.commands import zoo_list as run

        return run(typer.echo)

    run_guarded(body)


@zoo_app.command("copy")
def zoo_copy(
    name: Annotated[str, typer.Argument(help="a name from `nngraph zoo list`")],
    dest: Annotated[Optional[Path], typer.Argument(help="a file or folder (default: ./NAME.yaml)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing file")] = False,
) -> None:
    """Copy a shipped spec to start from (never over an existing file unless --force)."""

    def body() -> int:
        from nngraph.commands import zoo_copy as run

        return run(name, dest, force, typer.echo)

    run_guarded(body)


def main() -> None:
    """Console-script entry point."""
    import os

    # onnxruntime logs a coloured warning on stderr while it is being imported when it cannot keep its telemetry
    # device id (HOME not writable); no ORT setting silences it after the import, and it would come before
    # nngraph's own message. So ORT's telemetry is off in the CLI unless the user set ORT_DISABLE_TELEMETRY.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    app()


if __name__ == "__main__":
    main()
