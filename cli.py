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
if len(sys.argv) > 1 and sys.argv[1] in _FAST_COMMANDS and "--help" not in sys.argv:
    # `validate` runs in CI on every commit and must start in well under 0.5 s. typer
    # imports rich eagerly (~150 ms) just for pretty help/errors; this command prints
    # plain diagnostics, so hide rich from typer here.
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
MaxParams = Annotated[Optional[int], typer.Option("--max-params", help="refuse models with more parameters than this")]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="show Python tracebacks for internal errors")] = False) -> None:
    _STATE["debug"] = debug


def _limits(max_params: int | None):
    from dataclasses import replace

    from nngraph.limits import DEFAULT_LIMITS
    return replace(DEFAULT_LIMITS, max_params=max_params) if max_params else DEFAULT_LIMITS


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


def _spec_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file()))
        else:
            files.append(p)
    return files


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
        from nngraph.errors import FORMATTERS
        from nngraph.spec import check_spec

        files = _spec_files(paths)
        if not files:
            typer.echo("error: no spec files found", err=True)
            return 1
        all_diags, failed = [], 0
        for f in files:
            graph, diag = check_spec(f, set_ or [], _limits(max_params))
            items = list(diag)
            errors = [d for d in items if d.severity == "error" or strict]
            failed += bool(errors)
            all_diags.extend(items)
            if fmt == OutFormat.text and not quiet and not errors:
                extra = f" ({graph.total_params:,} parameters)" if graph is not None and graph.nodes else ""
                typer.echo(f"ok: {f}{extra}")
        if fmt == OutFormat.json:
            typer.echo(FORMATTERS["json"](all_diags))
        elif all_diags:
            typer.echo(FORMATTERS[fmt.value](all_diags), err=fmt == OutFormat.text)
        if fmt == OutFormat.text and not quiet:
            typer.echo(f"{len(files) - failed} valid, {failed} invalid", err=bool(failed))
        return 1 if failed else 0

    run_guarded(body)


@app.command()
def schema(output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write here instead of stdout")] = None) -> None:
    """Print (or write) the JSON Schema for spec files, generated from the op registry."""

    def body() -> None:
        from nngraph.io import write_text_atomic
        from nngraph.schema import json_schema

        text = json.dumps(json_schema(), indent=2) + "\n"
        if output:
            write_text_atomic(output, text)
            typer.echo(f"wrote {output}")
        else:
            sys.stdout.write(text)

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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
