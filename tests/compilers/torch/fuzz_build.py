"""Fuzzing past validate: mutated zoo specs that validate must build and run, or be refused by nngraph.

Each mutant changes one or two values of a zoo spec (a var, or a node parameter: numbers scaled,
zeroed, negated or made odd; strings swapped for other names the registry knows), at the spec's
small sizes. The property, per mutant: ``check_spec`` gives an error, or a warning that
``validate --strict`` refuses (refused at validate: a warning such as "cannot tell whether dims 64 and
batch are equal" says the spec may fail at some sizes, which is the contract of the symbolic dim
algebra), or the module builds and a forward pass on random inputs runs (accepted); any other
exception on the way is a finding. Seeded (``random.Random``), so every run sees the same mutants.

Run as a script for the counts: ``python tests/compilers/torch/fuzz_build.py [N] [SEED]``.
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

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "compilers" / "onnx"))
from onnx_support import small_overrides  # noqa: E402  (the zoo's small sizes, shared with the ONNX tests)



def _plain_yaml(path: Path) -> bool:
    """Specs that PyYAML reads as they are (a few use nngraph's own syntax, e.g. ``[x, lengths?]``)."""
    try:
        return isinstance(yaml.safe_load(path.read_text()), dict)
    except yaml.YAMLError:
        return False


SPECS = [p for p in sorted(ROOT.glob("specs/*.yaml")) + sorted(p for p in ROOT.glob("specs/seeds/*.yaml")
                                                               if "# small-sizes:" in p.read_text())
         if _plain_yaml(p)]
SKIP_KEYS = {"name", "in", "op", "block", "doc", "nngraph", "outputs", "inputs", "train", "dtype"}
STRINGS = ["relu", "gelu", "silu", "tanh", "causal", "none", "sum", "mean", "max", "same", "valid", "rope", "alibi",
           "sinusoidal", "learned", "zeros", "x"]
MAX_PARAMS = 2_000_000
STEP_TIMEOUT_S = 30


@dataclass
class Tally:
    """Counts per outcome, and the findings (spec text + what went wrong)."""

    counts: Counter = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)


def _value_slots(tree: Any, skip: set[str] = SKIP_KEYS) -> list[tuple[Any, Any]]:
    """(container, key) of every scalar under vars, graph and blocks, except names and references."""
    out: list[tuple[Any, Any]] = []
    stack = [tree.get(k) for k in ("vars", "graph", "blocks") if isinstance(tree, dict)]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for k, v in items:
            if k in skip:
                continue
            if isinstance(v, (dict, list)):
                stack.append(v)
            elif isinstance(v, (int, float, str)) and not (isinstance(v, str) and v.startswith("${")):
                out.append((node, k))
    return out


def _mutate_value(rng: random.Random, value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return rng.choice([0, 1, 2, 3, -1, value * 2, value // 2 if isinstance(value, int) else value / 2, value + 1,
                           0.5, 1e-9])
    return rng.choice(STRINGS)


def mutant(rng: random.Random) -> tuple[Path, str, list[str]]:
    """A zoo spec with one or two values changed: (seed path, YAML text, small-size overrides)."""
    path = rng.choice(SPECS)
    tree = yaml.safe_load(path.read_text())
    tree = copy.deepcopy(tree)
    slots = _value_slots(tree)
    for _ in range(rng.randint(1, 2)):
        container, key = rng.choice(slots)
        container[key] = _mutate_value(rng, container[key])
    return path, yaml.safe_dump(tree, sort_keys=False), small_overrides(path)


class _Timeout(BaseException):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def try_mutant(path: Path, text: str, overrides: list[str], work: Path) -> str:
    """One mutant's outcome: 'refused at validate', 'refused at build', 'ran', or a finding ('FINDING: ...')."""
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
    stage = "validate"
    try:
        graph, diag = check_spec(file, overrides, Limits(max_params=MAX_PARAMS))
        if graph is None or diag:  # errors, or the warnings `validate --strict` refuses
            return "refused at validate"
        stage = "build"
        torch.manual_seed(0)
        module = build_module(graph, seed=0)
        stage = "forward"
        check = forward_check(module, graph, seed=0)
        return "ran" if check.ok else f"FINDING: forward shapes differ from validate's: {check.problems}"
    except SpecError:
        return f"refused at {stage}"
    except _Timeout:
        return f"FINDING: {stage} took over {STEP_TIMEOUT_S} s"
    except Exception as exc:  # noqa: BLE001 - any other exception is what this fuzzer looks for
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return f"FINDING: {stage}: {type(exc).__name__}: {str(exc)[:300]} (at {Path(where.filename).name}:{where.lineno})"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fuzz(n: int, seed: int, work: Path) -> Tally:
    """Try ``n`` mutants drawn with ``seed``."""
    rng = random.Random(seed)
    tally = Tally()
    for _ in range(n):
        path, text, overrides = mutant(rng)
        outcome = try_mutant(path, text, overrides, work)
        tally.counts[outcome.split(":")[0]] += 1
        if outcome.startswith("FINDING"):
            tally.findings.append(f"{path.name} --set {' '.join(overrides)}\n{outcome}\n--- spec ---\n{text}")
    return tally


if __name__ == "__main__":
    import tempfile

    n, seed = (int(a) for a in (sys.argv[1:] + ["300", "0"])[:2])
    with tempfile.TemporaryDirectory() as tmp:
        result = fuzz(n, seed, Path(tmp))
    for key, value in sorted(result.counts.items()):
        print(f"{key:<22} {value}")
    for finding in result.findings:
        print("\n" + finding.split("--- spec ---")[0])
