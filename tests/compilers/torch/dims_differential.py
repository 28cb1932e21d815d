"""Differential property of the symbolic shape algebra: ``validate`` ok => build + forward succeed.

For a spec (a zoo spec at its small sizes, or a mutant of one), ``check_spec`` is the front end's verdict.
When it has no errors and no warnings (what ``validate --strict`` accepts), the module must build and a
forward pass must run, with the output shapes validate inferred, at two random assignments of the symbols
that satisfy the spec's declared ``dims:`` constraints (each symbol independently in [min, min + SPAN],
rounded up to its ``multiple_of``, within its ``max``; seeded). Anything else is a finding.

Random integer inputs that no embedding bounds (edge_index) are ids in [0, 2): over a graph whose node count
the mutation made 1, the module's own data check refuses them ('random data refused', not a finding).

Mutants reuse fuzz_build.py's value mutations and add shape mutations of the graph inputs: a symbolic dim
renamed to another symbol of the spec or to a new one, made a number, or turned into ``sym+1``-style text
through a relation under ``dims:`` (so the algebra sees related, unrelated and provably different dims).

Run as a script for the counts: ``python tests/compilers/torch/dims_differential.py [N] [SEED]``.
"""

from __future__ import annotations

import copy
import random
import signal
import sys
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_build import (MAX_PARAMS, SKIP_KEYS, SPECS, STEP_TIMEOUT_S, _alarm, _mutate_value, _Timeout,  # noqa: E402
                        _value_slots)
from onnx_support import small_overrides  # noqa: E402  (fuzz_build put tests/compilers/onnx on the path)

SPAN = 6  # sizes drawn in [min, min + SPAN]: small, so thousands of forwards stay cheap
ASSIGNMENTS = 2


@dataclass
class Tally:
    """Counts per outcome, and the findings (spec text + what went wrong)."""

    counts: Counter = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)


def sizes_for(graph: Any, rng: random.Random) -> dict[str, int]:
    """A random size for every symbol of the graph's inputs that satisfies the declared dims facts.

    Sizes start at 2: integer inputs no embedding bounds (edge_index) get random ids in [0, 2), which must
    name existing nodes. A symbol only the outputs name is data-dependent (``num_graphs`` of a pooled batch
    vector): it is drawn no larger than the smallest input size, as real data would have it."""
    from nngraph.symdim import Facts, symbols_of

    facts = graph.dim_facts or Facts()
    symbols = sorted({s for gi in graph.inputs.values() for d in gi.type.shape for s in symbols_of(d)})
    out = {}
    for s in symbols:
        low, m = max(2, facts.low_of(s)), facts.multiple.get(s, 1)
        value = rng.randint(low, low + SPAN)
        value = -(-value // m) * m
        high = facts.high.get(s)
        if high is not None and value > high:
            value = high // m * m
        out[s] = value
    data = {s for n in graph.nodes.values() for t in n.outputs.values() for d in t.shape for s in symbols_of(d)}
    for s in sorted(data - set(out)):
        out[s] = rng.randint(1, min(out.values(), default=2))
    return out


def _mutate_shapes(rng: random.Random, tree: dict) -> None:
    """Change one symbolic dim of one graph input (see the module docstring)."""
    inputs = tree.get("inputs") if isinstance(tree.get("inputs"), dict) else {}
    slots = [(spec["shape"], i) for spec in inputs.values() if isinstance(spec, dict)
             and isinstance(spec.get("shape"), list) for i, d in enumerate(spec["shape"]) if isinstance(d, str)]
    if not slots:
        return
    shape, i = rng.choice(slots)
    others = sorted({d for s, _ in slots for d in s if isinstance(d, str)} - {shape[i]})
    kind = rng.choice(["rename", "fresh", "number", "relation"])
    if kind == "rename" and others:
        shape[i] = rng.choice(others)
    elif kind == "number":
        shape[i] = rng.choice([1, 2, 3, 5, 8])
    elif kind == "relation" and others:
        tree.setdefault("dims", {})[shape[i]] = f"{rng.choice(others)}{rng.choice(['+1', '-1', '*2', ''])}"
    else:
        shape[i] = shape[i] + "_b"


def mutant(rng: random.Random) -> tuple[Path, str, list[str]]:
    """A zoo spec with one or two values changed and, half the time, one input dim: (path, YAML, overrides)."""
    path = rng.choice(SPECS)
    tree = copy.deepcopy(yaml.safe_load(path.read_text()))
    slots = _value_slots(tree, SKIP_KEYS | {"init"})  # initializer names are not shape checks (see the report)
    for _ in range(rng.randint(0, 2) if slots else 0):
        container, key = rng.choice(slots)
        container[key] = _mutate_value(rng, container[key])
    if rng.random() < 0.5 or not slots:
        _mutate_shapes(rng, tree)
    return path, yaml.safe_dump(tree, sort_keys=False), small_overrides(path)


def try_spec(path: Path, text: str, overrides: list[str], work: Path, seed: int) -> str:
    """One spec's outcome: 'refused at validate', 'warned at validate', 'ran', or 'FINDING: ...'."""
    import torch

    from nngraph.compilers.torch import build_module
    from nngraph.compilers.torch.check import forward_check
    from nngraph.errors import SpecError
    from nngraph.limits import Limits
    from nngraph.spec import check_spec

    file = work / path.name
    file.write_text(text)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(STEP_TIMEOUT_S)
    stage, sizes = "validate", {}
    try:
        graph, diag = check_spec(file, overrides, Limits(max_params=MAX_PARAMS))
        if graph is None or any(d.severity == "error" for d in diag):
            return "refused at validate"
        if any(d.severity == "warning" for d in diag):
            return "warned at validate"  # validate --strict refuses it: no promise to keep
        stage = "build"
        torch.manual_seed(0)
        module = build_module(graph, seed=0)
        rng = random.Random(seed)
        for k in range(ASSIGNMENTS):
            stage, sizes = "forward", sizes_for(graph, rng)
            check = forward_check(module, graph, sizes, seed=k)
            if not check.ok:
                return f"FINDING: at {sizes} forward shapes differ from validate's: {check.problems}"
        return "ran"
    except SpecError as err:
        return f"FINDING: {stage} at {sizes} refused what validate accepted: {err}"
    except _Timeout:
        return f"slow ({stage} took over {STEP_TIMEOUT_S} s)"
    except Exception as exc:  # noqa: BLE001 - any other exception is what this test looks for
        where = traceback.extract_tb(exc.__traceback__)[-1]
        if isinstance(exc, ValueError) and "is not a node" in str(exc):
            return "random data refused"  # ids in [0, 2) over a graph of one node: the data check, not a shape
        return (f"FINDING: {stage} at {sizes}: {type(exc).__name__}: {str(exc)[:300]} "
                f"(at {Path(where.filename).name}:{where.lineno})")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _record(tally: Tally, path: Path, text: str, overrides: list[str], outcome: str) -> None:
    tally.counts[outcome.split(":")[0].split(" (")[0]] += 1
    if outcome.startswith("FINDING"):
        tally.findings.append(f"{path.name} --set {' '.join(overrides)}\n{outcome}\n--- spec ---\n{text}")


def zoo(work: Path, seed: int = 0) -> Tally:
    """Every zoo spec the fuzzers use, unmutated, at its small sizes."""
    tally = Tally()
    for path in SPECS:
        text, overrides = path.read_text(), small_overrides(path)
        _record(tally, path, text, overrides, try_spec(path, text, overrides, work, seed))
    return tally


def mutants(n: int, seed: int, work: Path) -> Tally:
    """``n`` mutants drawn with ``seed``."""
    rng = random.Random(seed)
    tally = Tally()
    for i in range(n):
        path, text, overrides = mutant(rng)
        _record(tally, path, text, overrides, try_spec(path, text, overrides, work, seed * 100_003 + i))
    return tally


if __name__ == "__main__":
    import tempfile

    n, seed = (int(a) for a in (sys.argv[1:] + ["1000", "0"])[:2])
    with tempfile.TemporaryDirectory() as tmp:
        results = {"zoo": zoo(Path(tmp)), f"{n} mutants (seed {seed})": mutants(n, seed, Path(tmp))}
    for label, result in results.items():
        print(f"== {label}")
        for key, value in sorted(result.counts.items()):
            print(f"  {key:<26} {value}")
        for finding in result.findings:
            print("\n" + finding.split("--- spec ---")[0])
