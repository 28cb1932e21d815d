"""Bodies of the PyTorch CLI commands (compile, sample, import-weights, and ``inspect --torch``).

``cli.py`` keeps the signatures; each body takes an ``echo(text, err=False)`` and returns the exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

Echo = Callable[..., None]


def torch_check(graph: Any, dim: list[str] | None, seed: int = 0, module: Any = None) -> dict:
    """Compile (unless given a module), count real parameters, run a forward check: a JSON-ready dict."""
    from . import build_module
    from .check import describe, forward_check, parse_dims

    module = module if module is not None else build_module(graph, seed=seed)
    real = sum(p.numel() for p in module.parameters())
    result = forward_check(module, graph, parse_dims(dim), seed=seed)
    agree = real == graph.total_params
    lines = [f"torch parameters: {real:,} ({'matches' if agree else 'DIFFERS FROM'} the spec's {graph.total_params:,})",
             describe(result)]
    return {"parameters": real, "ok": result.ok and agree, "problems": result.problems,
            "outputs": {k: {"torch": list(g), "inferred": list(w) if w else None} for k, (g, w) in result.outputs.items()},
            "report": "\n".join(lines)}


def compile_command(spec: Path, overrides: list[str], limits: Any, *, output: Path | None, emit_python: Path | None,
                    seed: int, dim: list[str], target: str | None, mode: str, explain: bool, echo: Echo,
                    lower: Any = None) -> int:
    """``nngraph compile``: build the module (lowered for a target if asked), check a forward pass, save.

    ``lower(graph, target, mode, dim, explain) -> (graph, text)``: the planner's lowering, passed in by the CLI
    (:func:`nngraph.compilers.passes.cli.lower_for_cli`) because the torch back end does not import the planner."""
    from nngraph.outputs import check_output, spec_inputs
    from nngraph.spec import load_spec

    inputs = spec_inputs(spec)
    check_output(output, inputs)
    check_output(emit_python, [*inputs, ("the -o file", output)], "--emit-python")

    from . import build_module, write_python
    from .check import parse_dims
    from .weights import save_weights

    try:
        parse_dims(dim)  # a bad --dim is a usage error before anything is built
    except ValueError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    graph = load_spec(spec, overrides, limits)
    built = graph
    if target is not None or explain:
        built, text = lower(graph, target or "auto", mode, dim, explain)
        echo(text)
    if graph.networks:  # several networks: a ModuleDict of their modules (state keys <network>.<node>...)
        from .networks import build_networks

        module = build_networks(built, seed=seed)
    else:
        module = build_module(built, seed=seed)
    check = torch_check(graph, dim, seed, module)
    echo(f"compiled {graph.name} ({spec})")
    echo(check["report"])
    if not check["ok"]:
        return 1
    if emit_python:
        class_name = write_python(built, emit_python)
        echo(f"wrote {emit_python} (class {class_name})")
    if output:
        save_weights(module, graph, output)
        echo(f"wrote {output} (fingerprint {graph.fingerprint()})")
    return 0


def sample_command(spec: Path, output: Path, weights: Path | None, steps: int, seed: int, num: int, sampler: str,
                   eta: float, schedule: str | None, train_steps: int | None, cond: list[str], overrides: list[str],
                   dim: list[str], echo: Echo) -> int:
    """``nngraph sample``: DDPM/DDIM samples of a denoiser spec (or of a run folder: its spec, weights and noise
    schedule) as a PNG grid."""
    from nngraph.run_folder import model_source, run_config
    from nngraph.outputs import check_output, spec_inputs

    from .check import parse_dims
    from .diffusion_sampling import sample_to_png

    conds = {}
    for item in cond:
        key, _, value = item.partition("=")
        if not key.strip().isidentifier() or not value.strip().lstrip("-").isdigit():
            echo(f"error: --cond '{item}' is not NAME=INT (e.g. --cond label=3)", err=True)
            return 2
        conds[key.strip()] = int(value)
    check_output(output, [*spec_inputs(spec), ("the --weights file", weights)])
    trained = run_config(spec).get("diffusion") or {}  # the schedule the run trained with, unless overridden
    graph, _, weights = model_source(spec, overrides, weights)
    try:
        lines = sample_to_png(graph, output, weights, steps, seed, num, sampler, eta,
                              schedule or trained.get("schedule", "linear"), train_steps or trained.get("steps", 1000),
                              trained.get("beta_start", 1e-4), trained.get("beta_end", 0.02), cond=conds,
                              sizes=parse_dims(dim))
    except ValueError as exc:  # the sampler's refusals (not a denoiser, too many samples, weights) say what to do
        echo(f"error: {exc}", err=True)
        return 1
    for line in lines:
        echo(line, err=line.startswith(("warning", "note")))
    return 0


def import_weights_command(spec: Path, checkpoint: Path, source: str, output: Path, overrides: list[str],
                           echo: Echo) -> int:
    """``nngraph import-weights``: a Hugging Face checkpoint mapped onto the spec's parameter names."""
    from nngraph.outputs import check_output, folder_files, spec_inputs
    from nngraph.spec import load_spec

    from . import build_module
    from .hf_import import ImportWeightsError, load_hf_state_dict, read_state_dict
    from .weights import save_weights

    check_output(output, [*spec_inputs(spec), ("the checkpoint", checkpoint), *folder_files("a shard", checkpoint)])
    graph = load_spec(spec, overrides)
    try:
        state = read_state_dict(checkpoint)
        module = build_module(graph)
        converted = load_hf_state_dict(module, graph, source, state)
    except (ImportWeightsError, ValueError, OSError) as err:
        echo(f"error: {err}", err=True)
        return 1
    echo(f"imported {len(state) - len(converted.skipped)} tensors of {checkpoint} ({source}) into "
         f"{len(converted.tensors)} parameters of {graph.name}")
    for key, why in converted.skipped:
        echo(f"  skipped {key}: {why}")
    save_weights(module, graph, output)
    echo(f"wrote {output} (fingerprint {graph.fingerprint()})")
    return 0
