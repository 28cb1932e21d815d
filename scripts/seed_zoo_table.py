"""Check every spec of the seed zoo and write docs/seed-zoo.md, its status table.

The zoo is every spec in specs/seeds/ plus every top-level spec in specs/ whose header has a
``# System:`` line (the table's spec column gives the file).

Nothing in the table is kept by hand: each row comes from running the spec.

* validated -- ``check_spec`` at the spec's own (paper) sizes: no errors, no warnings;
* compiled -- the torch back end builds the full-size model on the meta device (shapes only, no
  memory) and its real parameter count equals the front end's ``graph.total_params``;
* forward+backward -- the model at the small sizes named in the spec's ``# small-sizes:`` header
  line (``--set`` overrides) runs forward in training mode on random inputs, every output has the
  shape the front end inferred, and a backward pass gives every parameter a finite gradient.
* exported -- at the same small sizes the ONNX exporter writes the model and ONNX Runtime matches
  torch at two sizes of every dynamic dim (max |ORT − torch| <= 1e-4 · max(1, max |torch|)), or
  the exporter's own error says why it does not export;
* trained -- the pytest tests named on the spec's ``# trained-by:`` header lines (tests that train
  the model and assert that it learned) are run and must pass; a spec with a ``train:`` section and
  no such test is trained for ``--train-steps`` steps with ``--train`` (the cell then reports what
  the run measured, not a judgement); otherwise the cell says there is nothing to train.

The system name, seed section and published count come from the spec's header comments
(``# System:``, ``# Seed:``, ``# Published count:``).

Usage::

    .venv/bin/python scripts/seed_zoo_table.py            # write docs/seed-zoo.md
    .venv/bin/python scripts/seed_zoo_table.py --readme   # ... and the table between the README markers
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

SPECS_DIR = ROOT / "specs"
SEEDS_DIR = SPECS_DIR / "seeds"
DOC = ROOT / "docs" / "seed-zoo.md"
README = ROOT / "README.md"
README_BEGIN, README_END = "<!-- seed-zoo:begin -->", "<!-- seed-zoo:end -->"
ONNX_TOLERANCE = 1e-4
SCHEMA_LINE = "# yaml-language-server: $schema=../../docs/nngraph.schema.json"
TOP_SCHEMA_LINE = "# yaml-language-server: $schema=../docs/nngraph.schema.json"  # specs/*.yaml

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
    trained_by: list[str] = field(default_factory=list)  # pytest node ids of tests that train the spec
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
        elif line.startswith("# trained-by:"):
            head.trained_by += line.partition(":")[2].split()
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
    exported: str = "not run"
    trained: str = "not run"
    ok: dict[str, bool] = field(default_factory=dict)
    exports: bool | None = None   # None: not tried
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Validated, compiled, ran forward+backward, and every training test named in the header passed
        (the export outcome is its own column: a spec that cannot export says why)."""
        return bool(self.ok) and all(self.ok.values())


def validate(path: Path, overrides: list[str] | None = None):
    """``(graph, problems)``: the front end's graph and every diagnostic (errors and warnings) as text."""
    from nngraph.spec import check_spec

    graph, diag = check_spec(path, overrides or [])
    return graph, [f"{d.pos}: {d.severity}: {d.message}" for d in diag]


def torch_param_count_on_meta(graph) -> int:
    """Build ``graph`` with the torch back end on the meta device; its real parameter count."""
    import torch

    from nngraph.compilers.torch import build_module

    with torch.device("meta"):
        model = build_module(graph, seed=0)
    return sum(p.numel() for p in model.parameters())


def concrete_inputs(graph, sizes: Mapping[str, int], seed: int = 0) -> dict:
    """Random graph inputs (``nngraph.compilers.torch.check.random_inputs``), with every ``lengths`` input
    feeding an attention mask set to valid lengths in [1, key length] (never an all-padding row)."""
    import torch

    from nngraph.compilers.torch.check import concrete_dim, random_inputs

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
    """``nngraph.compilers.torch.check.concrete_shape``, also for dims the front end writes as a slice of a
    symbolic dim (``tgt[0:-1:1]`` = the length of ``range(tgt)[0:-1:1]``), which its evaluator refuses."""
    from nngraph.compilers.torch.check import DEFAULT_SYMBOLIC, concrete_dim

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

    from nngraph.compilers.torch import build_module
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


def export_check(path: Path, overrides: list[str], tolerance: float = ONNX_TOLERANCE) -> tuple[bool, str]:
    """Export at ``overrides`` (no file written) and compare ONNX Runtime with torch at two sizes of every
    dynamic dim; ``(exports, cell)``, the cell quoting the largest difference or the exporter's reason."""
    from nngraph.compilers.onnx.export import ExportError, export_graph
    from nngraph.compilers.torch import build_module
    from nngraph import load_spec

    graph = load_spec(path, overrides)
    module = build_module(graph, seed=0).eval()
    try:
        result = export_graph(graph, None, module=module, verify=True, tolerance=tolerance, spec_file=str(path))
    except ExportError as err:
        return False, "no: " + str(err).strip().splitlines()[0]
    diff = result.verification.max_diff if result.verification is not None else float("nan")
    return True, f"yes, max |ORT − torch| {diff:.1e} (≤ {tolerance:g})"


def run_tests(node_ids: list[str], timeout: float = 1800) -> tuple[bool, str]:
    """Run pytest on ``node_ids`` (paths relative to the repository root) in a subprocess; ``(passed, cell)``."""
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *node_ids], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    names = ", ".join(n.rpartition("::")[2] or n for n in node_ids)
    summary = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    if proc.returncode == 0:
        return True, f"yes: {names} passed ({seconds:.0f} s)"
    return False, f"no: {names}: {summary}"


def train_check(path: Path, graph, header: Header, tests: bool, train: bool, steps: int) -> tuple[bool | None, str]:
    """The trained cell: the header's training tests, else a short run of the ``train:`` section (with
    ``train``), else nothing to train. ``(ok, cell)``; ok is None when no pass/fail judgement applies."""
    if header.trained_by:
        if not tests:
            return None, "not run (--no-tests)"
        return run_tests(header.trained_by)
    if graph is None or not getattr(graph, "train", None):
        return None, "— (no train: section or training test)"
    if not train:
        return None, "not run (train: section; --train runs it)"
    import tempfile

    from nngraph.compilers.train import train as run_training

    with tempfile.TemporaryDirectory() as out:
        summary = run_training(path, out=out, steps=steps, quiet=True)
    metrics = summary.get("test") or summary.get("val") or {}
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
    return None, f"ran {summary.get('steps')} steps ({summary.get('task')}){': ' + shown if shown else ''}"


def check(path: Path, export: bool = True, tests: bool = True, train: bool = False, train_steps: int = 50) -> Row:
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
    if export and row.header.small:
        try:
            row.exports, row.exported = export_check(path, row.header.small)
        except Exception as err:  # noqa: BLE001 - e.g. a torch error while tracing: the reason it does not export
            row.exports, row.exported = False, f"no: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    elif export:
        row.exported = "not run (no '# small-sizes:' line)"
    try:
        trained_ok, row.trained = train_check(path, graph, row.header, tests, train, train_steps)
    except Exception as err:  # noqa: BLE001
        trained_ok, row.trained = False, f"no: {type(err).__name__}: {err}"
    if trained_ok is not None:
        row.ok["trained"] = trained_ok
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
        "One spec per system of the seed texts (`/work/shared/seeds/`): every spec in `specs/seeds/` and",
        "every top-level spec in `specs/` whose header names its `# System:` (the spec column gives the",
        "file). Every cell below was computed by running the spec, not written by hand:",
        "",
        "- **validated**: `check_spec` at the paper sizes reports no error and no warning;",
        "- **compiled**: the torch back end builds the full-size model (on the meta device) and its real",
        "  parameter count equals the front end's;",
        "- **forward+backward**: at the small sizes of the spec's `# small-sizes:` line (`--set`",
        f"  overrides; symbolic dims {dims}, others 8), a training-mode forward pass on random inputs",
        "  gives every output its inferred shape and a backward pass gives every parameter a finite gradient;",
        "- **exported**: at the same sizes the ONNX export runs in ONNX Runtime like torch at two sizes of",
        f"  every dynamic dim (max \\|ORT − torch\\| ≤ {ONNX_TOLERANCE:g}), or the exporter's error says why not;",
        "- **trained**: the tests named on the spec's `# trained-by:` lines (they train it and assert that it",
        "  learned) were run and passed; a `train:` section without such a test is run only with `--train`.",
        "",
        "Each spec's header comment cites its seed section, its published parameter count, and what",
        "the spec could not express.",
        "",
        "| system | spec | seed section | parameters | published | validated | compiled | forward+backward "
        "| exported | trained |",
        "| --- | --- | --- | ---: | ---: | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        rel = r.path.relative_to(ROOT).as_posix()
        params = f"{r.params:,}" if r.params is not None else "—"
        pub = r.header.published
        if r.header.published_exact is not None and r.params is not None:
            pub += " (equal)" if r.header.published_exact == r.params else " (DIFFERENT)"
        out.append("| " + " | ".join(_cell(c) for c in (
            r.header.system or r.path.stem, f"[{rel}](../{rel})", r.header.seed, params, pub,
            r.validated, r.compiled, r.forward_backward, r.exported, r.trained)) + " |")
    passed = sum(r.passed for r in rows)
    exported = sum(bool(r.exports) for r in rows)
    out += ["", f"{passed} of {len(rows)} specs pass every check (torch {torch.__version__}); "
            f"{exported} of {len(rows)} export to ONNX with ORT parity.", "",
            "Small sizes used for the forward+backward and export checks:", ""]
    out += [f"- `{r.path.relative_to(ROOT).as_posix()}`: `{' '.join(r.header.small) or '(none)'}`" for r in rows]
    return "\n".join(out) + "\n"


def _short(cell: str) -> str:
    """The verdict of a cell for the README: 'yes', 'no', 'not run' or '—'."""
    for word in ("yes", "no:", "not run", "—"):
        if cell.startswith(word):
            return word.rstrip(":")
    return cell


def render_readme(rows: list[Row]) -> str:
    """The compact README table (verdicts only; docs/seed-zoo.md has the details)."""
    out = [README_BEGIN,
           "<!-- Generated by `.venv/bin/python scripts/seed_zoo_table.py --readme`. Do not edit by hand. -->",
           "",
           "| system | spec | validated | compiled | forward+backward | exported | trained |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        rel = r.path.relative_to(ROOT).as_posix()
        out.append("| " + " | ".join(_cell(c) for c in (
            r.header.system or r.path.stem, f"[{rel}]({rel})", _short(r.validated), _short(r.compiled),
            _short(r.forward_backward), _short(r.exported), _short(r.trained))) + " |")
    out += ["", f"Details, reasons and parameter counts: [docs/seed-zoo.md](docs/seed-zoo.md).", README_END]
    return "\n".join(out)


def write_readme(path: Path, rows: list[Row]) -> None:
    """Replace the text between the seed-zoo markers of ``path`` with the table (append a section if absent)."""
    from nngraph.io import write_text_atomic

    text = path.read_text(encoding="utf-8")
    table = render_readme(rows)
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin >= 0 and end > begin:
        text = text[:begin] + table + text[end + len(README_END):]
    elif begin >= 0 or end >= 0:
        raise SystemExit(f"{path}: one seed-zoo marker without the other; expected {README_BEGIN} ... {README_END}")
    else:
        text = text.rstrip("\n") + "\n\n## Seed zoo\n\n" + table + "\n"
    write_text_atomic(path, text)


def top_level_specs() -> list[Path]:
    """The specs in specs/ (not specs/seeds/) whose header names a ``# System:``, sorted by file name."""
    return [p for p in sorted(SPECS_DIR.glob("*.yaml")) if read_header(p).system]


def seed_specs() -> list[Path]:
    """The specs of the seed zoo: the top-level ones with a ``# System:`` header, then specs/seeds/*.yaml."""
    return top_level_specs() + sorted(SEEDS_DIR.glob("*.yaml"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="*", type=Path, help="specs to check (default: specs/*.yaml with a '# System:' header and specs/seeds/*.yaml)")
    ap.add_argument("-o", "--output", type=Path, default=DOC, help="where to write the table (default: docs/seed-zoo.md)")
    ap.add_argument("--check", action="store_true", help="exit 1 if any spec fails a check")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: small models, loaded machines)")
    ap.add_argument("--readme", type=Path, nargs="?", const=README, default=None,
                    help="also write the table between the seed-zoo markers of this file (default README.md)")
    ap.add_argument("--no-export", action="store_true", help="skip the ONNX export check")
    ap.add_argument("--no-tests", action="store_true", help="skip the training tests named by '# trained-by:'")
    ap.add_argument("--train", action="store_true", help="run specs with a train: section and no training test")
    ap.add_argument("--train-steps", type=int, default=50, help="steps of such a run (default 50)")
    args = ap.parse_args(argv)

    import torch

    from nngraph.io import write_text_atomic

    torch.set_num_threads(args.threads)
    rows = []
    for path in [p.resolve() for p in args.specs] or seed_specs():
        row = check(path, export=not args.no_export, tests=not args.no_tests, train=args.train,
                    train_steps=args.train_steps)
        status = "ok" if row.passed else "FAIL"
        print(f"{status:4} {path.name:28} {row.seconds:6.1f}s  {row.validated} | {row.compiled} | "
              f"{row.forward_backward} | {row.exported} | {row.trained}")
        rows.append(row)
    write_text_atomic(args.output, render(rows))
    print(f"wrote {args.output}")
    if args.readme is not None:
        write_readme(args.readme, rows)
        print(f"wrote the table into {args.readme}")
    return 1 if args.check and not all(r.passed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
