"""Bodies of the front-end CLI commands (validate, schema, docs, ops, inspect, graph): torch-free.

``cli.py`` keeps only the command signatures (typer options and help); each body here takes an
``echo(text, err=False)`` and returns the exit code, so the commands are testable without typer.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

Echo = Callable[..., None]


def echo_stdout(text: str, err: bool = False) -> None:
    """Plain ``print`` to stdout or stderr (what ``validate`` uses: no typer, no rich)."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def limits(max_params: int | None = None, max_memory_gb: float | None = None, builds: bool = True) -> Any:
    """The default resource limits, with ``--max-params`` and ``--max-memory`` (GB) applied; ``builds`` False for
    a command that only describes the spec (a model over the memory bound is then a warning)."""
    from .limits import DEFAULT_LIMITS

    caps = replace(DEFAULT_LIMITS, max_params=max_params) if max_params else DEFAULT_LIMITS
    caps = caps if builds else replace(caps, memory_refuses=False)
    return replace(caps, max_memory=int(max_memory_gb * 1e9)) if max_memory_gb else caps


def spec_files(paths: list[Path]) -> list[Path]:
    """The spec files named: files as given, directories searched for ``*.yaml`` / ``*.yml``."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file()))
        else:
            files.append(p)
    return files


def validate_files(paths: list[Path], overrides: list[str], fmt: str, strict: bool, quiet: bool,
                   caps: Any = None, echo: Echo = echo_stdout) -> int:
    """``nngraph validate``: every error of every file; exit code 0 or 1."""
    from .errors import FORMATTERS
    from .spec import check_spec

    files = spec_files(paths)
    if not files:
        echo("error: no spec files found", err=True)
        return 1
    all_diags, failed = [], 0
    for f in files:
        graph, diag = check_spec(f, overrides, caps or limits())
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


def list_ops(family: str | None, echo: Echo) -> int:
    """``nngraph ops``: every primitive by family, with its parameters."""
    from .registry import families

    known = families()
    if family is not None and family not in known:
        echo(f"error: --family {family}: no such family (families: {', '.join(known)})", err=True)
        return 2
    for fam, defs in known.items():
        if family and fam != family:
            continue
        echo(f"{fam}:")
        for d in defs:
            params = ", ".join(k if p.required else f"{k}={p.default!r}" for k, p in d.params.items())
            echo(f"  {d.name:<22} {d.summary}")
            if params:
                echo(f"  {'':<22} params: {params}")
    return 0


def zoo_list(echo: Echo) -> int:
    """``nngraph zoo list``: every shipped spec with the system it builds."""
    from .zoo import zoo_specs

    specs = zoo_specs()
    width = max(len(s.name) for s in specs)
    for s in specs:
        echo(f"{s.name:<{width}}  {s.system}")
    return 0


def zoo_copy(name: str, dest: Path | None, force: bool, echo: Echo) -> int:
    """``nngraph zoo copy NAME [DEST]``: write a shipped spec to start from; never over a file unless --force."""
    from .io import write_text_atomic
    from .zoo import copy_destination, find_spec

    try:
        spec = find_spec(name)
    except KeyError as err:
        echo(f"error: {err.args[0]}", err=True)
        return 1
    target = copy_destination(spec, dest)
    if target.exists() and not force:
        echo(f"error: {target} exists; choose another destination or pass --force to replace it", err=True)
        return 1
    write_text_atomic(target, spec.text)
    echo(f"wrote {target} (validate it with `nngraph validate {target}`)")
    return 0


def write_or_check(output: Path | None, text: str, check: bool, regenerate: str, echo: Echo) -> int:
    """Write ``text`` to ``output`` (stdout without one), or with ``check`` compare and report staleness."""
    from .io import write_text_atomic

    if check:
        if output is None:
            echo("error: --check needs -o FILE", err=True)
            return 2
        current = output.read_text(encoding="utf-8") if output.is_file() else None
        if current == text:
            echo(f"up to date: {output}")
            return 0
        echo(f"error: {output} is {'missing' if current is None else 'stale'}; run `{regenerate}`", err=True)
        return 1
    if output is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(output, text)
        echo(f"wrote {output}")
    return 0


def inspect_text(summary: dict, want_rich: bool) -> str | None:
    """Print the summary as a rich table when wanted and rich is importable; else return plain text."""
    from .inspect import format_table, node_rows

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


def show_warnings(warnings: list[Any]) -> None:
    """A describing command's diagnostics on stderr, as ``validate`` prints them (warnings never change its exit
    code)."""
    from .errors import format_text

    sys.stderr.write(format_text(warnings) + "\n")


def draw_command(spec: Path, output: Path | None, kind: str, overrides: list[str], caps: Any, echo: Echo,
                 collapse: bool = False) -> int:
    """``nngraph graph``: DOT / Mermaid on stdout, or a file (svg/png through Graphviz); ``collapse``: repeats folded."""
    from .draw import DrawError, render, run_dot, to_dot, to_mermaid
    from .outputs import check_output, spec_inputs
    from .spec import load_spec

    check_output(output, spec_inputs(spec))

    g = load_spec(spec, overrides, caps, on_warning=show_warnings)
    if collapse:
        from .draw_collapse import collapse_repeats

        g = collapse_repeats(g)
    try:
        if output is None:
            if kind == "svg":
                sys.stdout.write(run_dot(to_dot(g), "svg").decode("utf-8"))
            else:
                sys.stdout.write(to_mermaid(g) if kind == "mmd" else to_dot(g))
            return 0
        render(g, output, kind)
    except DrawError as err:
        echo(f"error: {err}", err=True)
        return 1
    echo(f"wrote {output}")
    return 0


def cost_command(spec: Path, overrides: list[str], dims: list[str] | None, batch: int | None, mode: str,
                 target: str | None, fmt: str, echo: Echo) -> int:
    """``nngraph cost``: the cost report (:mod:`nngraph.cost.report`) as text or JSON; exit 2 on a bad --dim."""
    from .cost.report import cost_report, format_text, sizes_for
    from .limits import parse_dims
    from .spec import load_spec

    try:
        given = parse_dims(dims)
    except ValueError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    graph = load_spec(spec, overrides, on_warning=show_warnings)
    sizes, defaulted = sizes_for(graph, given, batch)
    report = cost_report(graph, sizes, mode, target)
    if fmt == "json":
        echo(json.dumps(report, indent=2, default=str))
        return 0
    if defaulted:
        echo(f"note: sizes not given, defaulted: {', '.join(defaulted)} (give --dim NAME=INT)", err=True)
    echo(format_text(report))
    return 0


def view_command(spec: Path, output: Path, overrides: list[str], dims: list[str] | None, target: str | None,
                 echo: Echo) -> int:
    """``nngraph view``: the interactive HTML page (:mod:`nngraph.view`) with the cost and the diagnostics on it.

    A spec with errors still gets its page when its graph can be built (the errors marked on their nodes, the
    rest in a banner, no cost), and the command then exits 1 after printing them as ``validate`` does; a spec
    whose graph cannot be built at all (bad YAML, no graph) writes nothing and fails like ``validate``."""
    from .cost.report import cost_report, sizes_for
    from .errors import SpecError
    from .limits import parse_dims
    from .outputs import check_output, spec_inputs
    from .spec import check_spec
    from .view import view_data, write_view

    try:
        given = parse_dims(dims)
    except ValueError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    check_output(output, spec_inputs(spec))
    graph, diag = check_spec(spec, overrides)
    errors = [d for d in diag if d.severity == "error"]
    if graph is None:
        raise SpecError(errors)
    if diag.items:
        show_warnings(diag.items)
    report = None if errors else cost_report(graph, sizes_for(graph, given, None)[0], "inference", target)
    path = write_view(view_data(graph, report, diag.items), output)
    if errors:
        echo(f"wrote {path}, with the {len(errors)} error(s) above on it: the spec does not validate", err=True)
        return 1
    echo(f"wrote {path}")
    return 0


def diff_command(a: Path, b: Path, dims: list[str] | None, fmt: str, fail_on: list[str], echo: Echo) -> int:
    """``nngraph diff``: the semantic diff (:mod:`nngraph.diff`); exit 1 when a ``--fail-on`` kind changed."""
    from .cost.report import sizes_for
    from .diff import diff_graphs, failed, format_diff
    from .limits import parse_dims
    from .spec import load_spec

    try:
        given = parse_dims(dims)
    except ValueError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    ga, gb = load_spec(a, on_warning=show_warnings), load_spec(b, on_warning=show_warnings)
    sizes, _ = sizes_for(ga, given, None)
    sizes.update(sizes_for(gb, sizes, None)[0])
    d = diff_graphs(ga, gb, sizes)
    echo(json.dumps(d, indent=2, default=str) if fmt == "json" else format_diff(d, markdown=fmt == "md"))
    hit = failed(d, fail_on)
    if hit:
        echo(f"changed: {', '.join(hit)} (--fail-on)", err=True)
    return 1 if hit else 0
