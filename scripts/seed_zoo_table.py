"""Check every spec in specs/seeds/ and write docs/seed-zoo.md, the seed zoo's status table.

Nothing in the table is kept by hand: each row comes from running the spec.

* validated -- ``check_spec`` at the spec's own (paper) sizes: no errors, no warnings;
* compiled -- the torch back end builds the full-size model on the meta device (shapes only, no
  memory) and its real parameter count equals the front end's ``graph.total_params``;
* forward+backward -- the model at the small sizes named in the spec's ``# small-sizes:`` header
  line (``--set`` overrides) runs forward in training mode on random inputs, every output has the
  shape the front end inferred, and a backward pass gives every parameter a finite gradient.

The system name, seed section and published count come from the spec's header comments
(``# System:``, ``# Seed:``, ``# Published count:``).

Usage::

    .venv/bin/python scripts/seed_zoo_table.py            # write docs/seed-zoo.md
    .venv/bin/python scripts/seed_zoo_table.py --check    # also exit 1 if any row fails
    .venv/bin/python scripts/seed_zoo_table.py -o OUT.md specs/seeds/alexnet.yaml
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEEDS_DIR = ROOT / "specs" / "seeds"
DOC = ROOT / "docs" / "seed-zoo.md"
SCHEMA_LINE = "# yaml-language-server: $schema=../../docs/nngraph.schema.json"

#: concrete sizes of symbolic dims for the forward+backward check (others: 8)
SMALL_DIMS = {"batch": 2, "seq": 8, "src": 6, "tgt": 7, "num_nodes": 8, "num_edges": 12}

_SLICED_DIM_RE = re.compile(r"\b([A-Za-z_]\w*)\[(-?\d+):(-?\d*):(-?\d+)\]")
_PUBLISHED_RE = re.compile(r"^# Published count: (none|~[\d.]+M|\d[\d,]*)")
_SEED_RE = re.compile(r'(\d{3}) "([^"]+)"')


# ----- the header ------------------------------------------------------------------
@dataclass
class Header:
    """What a seed spec's leading comment block says about it."""

    system: str = ""
    seed: str = ""                   # the first cited seed section, e.g. 'seed 002 "Sparse Transformers"'
    published: str = "none"          # 'none', '~65M' or '61,100,840'
    small: list[str] = field(default_factory=list)
    first_line: str = ""

    @property
    def published_exact(self) -> int | None:
        """The published count when it is an exact integer."""
        return int(self.published.replace(",", "")) if self.published[:1].isdigit() else None


def read_header(path: Path) -> Header:
    """Parse the ``# Key: value`` lines of the comment block before ``nngraph: 1``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    head = Header(first_line=lines[0] if lines else "")
    comment = []
    for line in lines:
        if not line.startswith("#"):
            break
        comment.append(line)
    for i, line in enumerate(comment):
        if line.startswith("# System:"):
            head.system = line.partition(":")[2].strip()
        elif line.startswith("# Seed:"):
            text = line.partition(":")[2]
            for more in comment[i + 1:]:  # the citation may wrap over several lines
                if re.match(r"^# [A-Za-z -]+:", more):
                    break
                text += " " + more[1:].strip()
            m = _SEED_RE.search(text)
            head.seed = f'seed {m.group(1)} "{m.group(2)}"' if m else text.strip()
        elif (m := _PUBLISHED_RE.match(line)):
            head.published = m.group(1)
        elif line.startswith("# small-sizes:"):
            head.small = line.partition(":")[2].split()
    return head


# ----- the checks --------------------------------------------------------------------
@dataclass
class Row:
    """One spec's results."""

    path: Path
    header: Header
    params: int | None = None
    validated: str = ""
    compiled: str = ""
    forward_backward: str = ""
    ok: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.ok) and all(self.ok.values())


def validate(path: Path, overrides: list[str] | None = None):
    """``(graph, problems)``: the front end's graph and every diagnostic (errors and warnings) as text."""
    from nngraph.spec import check_spec

    graph, diag = check_spec(path, overrides or [])
    return graph, [f"{d.pos}: {d.severity}: {d.message}" for d in diag]


def torch_param_count_on_meta(graph) -> int:
    """Build ``graph`` with the torch back end on the meta device; its real parameter count."""
    import torch

    from compilers.torch import build_module

    with torch.device("meta"):
        model = build_module(graph, seed=0)
    return sum(p.numel() for p in model.parameters())


def concrete_inputs(graph, sizes: Mapping[str, int], seed: int = 0) -> dict:
    """Random graph inputs (``compilers.torch.check.random_inputs``), with every ``lengths`` input
    feeding an attention mask set to valid lengths in [1, key length] (never an all-padding row)."""
    import torch

    from compilers.torch.check import concrete_dim, random_inputs

    inputs = random_inputs(graph, sizes, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    for node in graph.nodes.values():
        ref = node.inputs.get("lengths")
        if ref is None or ref.node not in inputs:
            continue
        keys = node.inputs.get("context") or node.inputs["x"]
        n_keys = concrete_dim(graph.type_of(keys).shape[1], sizes)
        t = inputs[ref.node]
        inputs[ref.node] = torch.randint(1, n_keys + 1, tuple(t.shape), generator=gen, dtype=t.dtype)
    return inputs


def concrete_shape(t, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """``compilers.torch.check.concrete_shape``, also for dims the front end writes as a slice of a
    symbolic dim (``tgt[0:-1:1]`` = the length of ``range(tgt)[0:-1:1]``), which its evaluator refuses."""
    from compilers.torch.check import DEFAULT_SYMBOLIC, concrete_dim

    def size(name: str) -> int:
        return sizes.get(name, DEFAULT_SYMBOLIC)

    def sliced(m: re.Match) -> str:
        start, end, step = int(m.group(2)), int(m.group(3)) if m.group(3) else None, int(m.group(4))
        return str(len(range(size(m.group(1)))[start:end:step]))

    return tuple(concrete_dim(_SLICED_DIM_RE.sub(sliced, d) if isinstance(d, str) else d, sizes) for d in t.shape)


def forward_backward(path: Path, overrides: list[str], sizes: Mapping[str, int] | None = None,
                     seed: int = 0) -> tuple[int, list[str]]:
    """Compile at ``overrides``, run forward (train mode) and backward; ``(n_params, problems)``."""
    import torch

    from compilers.torch import build_module
    from nngraph import load_spec

    sizes = {**SMALL_DIMS, **(sizes or {})}
    graph = load_spec(path, overrides)
    model = build_module(graph, seed=seed)
    model.train()
    inputs = concrete_inputs(graph, sizes, seed)
    out = model(**inputs)
    produced = out if isinstance(out, dict) else {next(iter(graph.outputs)): out}
    problems = []
    loss = None
    for name, ref in graph.outputs.items():
        got = produced[name]
        want = concrete_shape(graph.type_of(ref), sizes)
        if tuple(got.shape) != want:
            problems.append(f"output '{name}': torch gave {list(got.shape)}, the spec infers {list(want)}")
        if got.is_floating_point():
            if not torch.isfinite(got).all():
                problems.append(f"output '{name}' has non-finite values")
            term = got.float().pow(2).mean()
            loss = term if loss is None else loss + term
    if loss is None:
        problems.append("no floating-point output to differentiate")
    else:
        loss.backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            problems.append(f"parameter '{name}' got no gradient")
        elif not torch.isfinite(p.grad).all():
            problems.append(f"parameter '{name}' has a non-finite gradient")
    return sum(p.numel() for p in model.parameters()), problems


def check(path: Path) -> Row:
    """Run every check on one spec."""
    t0 = time.perf_counter()
    row = Row(path, read_header(path))
    graph, problems = validate(path)
    row.ok["validated"] = graph is not None and not problems
    row.validated = "yes" if row.ok["validated"] else "no: " + "; ".join(problems[:3])
    if graph is None:
        row.ok["compiled"] = row.ok["forward_backward"] = False
        row.compiled = row.forward_backward = "not run (invalid)"
        return row
    row.params = graph.total_params
    try:
        n = torch_param_count_on_meta(graph)
        row.ok["compiled"] = n == graph.total_params
        row.compiled = (f"yes, {n:,} torch parameters" if row.ok["compiled"]
                        else f"no: torch has {n:,} parameters, the spec {graph.total_params:,}")
    except Exception as err:  # noqa: BLE001 - a failure is a table entry, not a crash
        row.ok["compiled"] = False
        row.compiled = f"no: {type(err).__name__}: {err}"
    if not row.header.small:
        row.ok["forward_backward"] = False
        row.forward_backward = "not run (no '# small-sizes:' line)"
    else:
        try:
            n, problems = forward_backward(path, row.header.small)
            row.ok["forward_backward"] = not problems
            row.forward_backward = (f"yes, {n:,} parameters" if not problems else "no: " + "; ".join(problems[:3]))
        except Exception as err:  # noqa: BLE001
            row.ok["forward_backward"] = False
            row.forward_backward = f"no: {type(err).__name__}: {err}"
    row.seconds = time.perf_counter() - t0
    return row


# ----- the document -------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row]) -> str:
    """The Markdown document for ``rows``."""
    import torch

    dims = ", ".join(f"{k}={v}" for k, v in SMALL_DIMS.items())
    out = [
        "# Seed zoo",
        "",
        "<!-- Generated by `.venv/bin/python scripts/seed_zoo_table.py`. Do not edit by hand. -->",
        "",
        "One spec per system of the seed texts (`/work/shared/seeds/`), in `specs/seeds/`. Every",
        "cell below was computed by running the spec, not written by hand:",
        "",
        "- **validated**: `check_spec` at the paper sizes reports no error and no warning;",
        "- **compiled**: the torch back end builds the full-size model (on the meta device) and its real",
        "  parameter count equals the front end's;",
        "- **forward+backward**: at the small sizes of the spec's `# small-sizes:` line (`--set`",
        f"  overrides; symbolic dims {dims}, others 8), a training-mode forward pass on random inputs",
        "  gives every output its inferred shape and a backward pass gives every parameter a finite gradient.",
        "",
        "Each spec's header comment cites its seed section, its published parameter count, and what",
        "the spec could not express.",
        "",
        "| system | spec | seed section | parameters | published | validated | compiled | forward+backward |",
        "| --- | --- | --- | ---: | ---: | --- | --- | --- |",
    ]
    for r in rows:
        rel = r.path.relative_to(ROOT).as_posix()
        params = f"{r.params:,}" if r.params is not None else "—"
        pub = r.header.published
        if r.header.published_exact is not None and r.params is not None:
            pub += " (equal)" if r.header.published_exact == r.params else " (DIFFERENT)"
        out.append("| " + " | ".join(_cell(c) for c in (
            r.header.system or r.path.stem, f"[{rel}](../{rel})", r.header.seed, params, pub,
            r.validated, r.compiled, r.forward_backward)) + " |")
    passed = sum(r.passed for r in rows)
    out += ["", f"{passed} of {len(rows)} specs pass every check (torch {torch.__version__}).", "",
            "Small sizes used for the forward+backward check:", ""]
    out += [f"- `{r.path.stem}`: `{' '.join(r.header.small) or '(none)'}`" for r in rows]
    return "\n".join(out) + "\n"


def seed_specs() -> list[Path]:
    """The specs of the seed zoo, sorted by file name."""
    return sorted(SEEDS_DIR.glob("*.yaml"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="*", type=Path, help="specs to check (default: specs/seeds/*.yaml)")
    ap.add_argument("-o", "--output", type=Path, default=DOC, help="where to write the table (default: docs/seed-zoo.md)")
    ap.add_argument("--check", action="store_true", help="exit 1 if any spec fails a check")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: small models, loaded machines)")
    args = ap.parse_args(argv)

    import torch

    from nngraph.io import write_text_atomic

    torch.set_num_threads(args.threads)
    rows = []
    for path in [p.resolve() for p in args.specs] or seed_specs():
        row = check(path)
        status = "ok" if row.passed else "FAIL"
        print(f"{status:4} {path.name:28} {row.seconds:6.1f}s  {row.validated} | {row.compiled} | {row.forward_backward}")
        rows.append(row)
    write_text_atomic(args.output, render(rows))
    print(f"wrote {args.output}")
    return 1 if args.check and not all(r.passed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
