"""Run one hostile-input case: a fresh folder, the files the case makes, one ``nngraph`` command.

A case is a YAML file in ``cases/`` (one per case; see ``cases/README.md``). The runner makes the
case's files in an empty temporary folder, runs ``python -m nngraph ARGV`` there as a user would
(own process, piped output, a wall-time limit), and returns what happened. The checks every case
gets are in :func:`check`: the exit code, no traceback, nothing executed, nothing overwritten or
left behind, and the time and memory caps.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).with_name("cases")
MEASURE = Path(__file__).with_name("measure.py")  # runs the command and reports its own peak memory
PAYLOAD_MARK = "PWNED"  # hostile payloads try to create this file; it must never appear
KEYS = {"about", "files", "setup", "argv", "exit", "stderr", "stderr_first", "stdout", "may_change", "may_create",
        "timeout", "memory_mb", "env"}


@dataclass
class Case:
    """One case file, parsed; defaults are the strictest reasonable ones."""

    name: str
    about: str
    argv: list[str]
    exit: int
    files: dict[str, Any] = field(default_factory=dict)
    setup: str = ""
    stderr: list[str] = field(default_factory=list)
    stderr_first: str | None = None
    stdout: list[str] = field(default_factory=list)
    may_change: list[str] = field(default_factory=list)
    may_create: list[str] = field(default_factory=list)
    timeout: float = 60.0
    memory_mb: int = 3000
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one run did: exit code, output, wall seconds, peak RSS, and the folder's digests before/after."""

    code: int
    out: str
    err: str
    seconds: float
    peak_mb: float
    timed_out: bool
    before: dict[str, str]
    after: dict[str, str]


def load_case(path: Path) -> Case:
    """Parse a case file; unknown keys are an error in the case itself."""
    data = yaml.safe_load(path.read_text())
    unknown = set(data) - KEYS
    if unknown:
        raise ValueError(f"{path.name}: unknown keys {sorted(unknown)} (known: {sorted(KEYS)})")
    return Case(name=path.stem, **data)


def case_files() -> list[Path]:
    """Every case in the corpus, sorted."""
    return sorted(CASES.glob("*.yaml"))


def make_files(case: Case, folder: Path) -> None:
    """Write the case's files: text, ``{copy: repo/relative/path}``, or ``{hex: ...}``; then run ``setup``.

    ``setup`` is trusted test code (Python, run in the folder) for inputs YAML cannot hold: arrays,
    zip bombs, pickles, FIFOs, symlinks, sparse files.
    """
    for rel, spec in case.files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, str):
            target.write_text(spec)
        elif "copy" in spec:
            shutil.copyfile(ROOT / spec["copy"], target)
        elif "hex" in spec:
            target.write_bytes(bytes.fromhex(spec["hex"]))
        else:
            raise ValueError(f"{case.name}: file {rel}: give text, copy: or hex:")
    if case.setup:
        code = compile(case.setup, f"{case.name}.yaml:setup", "exec")
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            exec(code, {"__name__": "setup", "ROOT": ROOT})  # noqa: S102 - the corpus's own trusted fixture code
        finally:
            os.chdir(cwd)


def digests(folder: Path) -> dict[str, str]:
    """Relative path -> kind and content digest of everything in the folder (links and FIFOs not followed)."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            elif not path.is_file():
                found[rel] = "special"
            elif path.stat().st_size > 64 << 20:  # sparse giants: size and mtime stand for the content
                st = path.stat()
                found[rel] = f"big:{st.st_size}:{st.st_mtime_ns}"
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run_case(case: Case, folder: Path) -> Outcome:
    """Make the files, run ``python -m nngraph`` in ``folder``, and measure it."""
    make_files(case, folder)
    before = digests(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env.update({"HOME": str(folder), "NO_COLOR": "1", "TERM": "dumb", "PYTHONWARNINGS": "ignore",
                "OMP_NUM_THREADS": "1", **case.env})
    out_path, err_path = folder.parent / f"{case.name}.out", folder.parent / f"{case.name}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.monotonic()
        report = folder.parent / f"{case.name}.rss"
        command = [sys.executable, str(MEASURE), str(report), sys.executable, "-m", "nngraph", *case.argv]
        proc = subprocess.Popen(command, cwd=folder, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(case.timeout, kill)
        timer.start()
        proc.wait()
        timer.cancel()
        seconds = time.monotonic() - start
    code, peak_kib = (int(v) for v in report.read_text().split()) if report.exists() else (proc.returncode, 0)
    return Outcome(code, out_path.read_text(errors="replace"), err_path.read_text(errors="replace"),
                   seconds, peak_kib / 1024, killed.is_set(), before, digests(folder))


def check(case: Case, got: Outcome) -> list[str]:
    """Every promise the case breaks, as sentences (empty: the case holds)."""
    broken: list[str] = []
    text = got.out + got.err
    if got.timed_out:
        broken.append(f"did not finish in {case.timeout:g} s (killed)")
    if got.code != case.exit:
        broken.append(f"exit code {got.code}, expected {case.exit}")
    if "Traceback (most recent call last)" in text:
        broken.append("a Python traceback reached the user")
    if any(Path(p).name == PAYLOAD_MARK for p in got.after):
        broken.append("a payload ran (it created PWNED)")
    if got.peak_mb > case.memory_mb:
        broken.append(f"peak memory {got.peak_mb:.0f} MB over the cap of {case.memory_mb} MB")
    for want in case.stderr:
        if want.lower() not in got.err.lower():
            broken.append(f"stderr lacks {want!r}")
    if case.stderr_first == "" and got.err:
        broken.append("stderr is not empty (a library's log line?)")
    elif case.stderr_first and not got.err.lower().startswith(case.stderr_first.lower()):
        broken.append(f"stderr does not start with {case.stderr_first!r} (a library's log line came first?)")
    for want in case.stdout:
        if want.lower() not in got.out.lower():
            broken.append(f"stdout lacks {want!r}")
    for rel, digest in got.before.items():
        if rel not in case.may_change and got.after.get(rel) != digest:
            broken.append(f"{rel} was changed or removed")
    allowed_new = set(case.may_create) | set(case.may_change)
    for rel in got.after.keys() - got.before.keys():
        if not any(rel == a or rel.startswith(a.rstrip("/") + "/") for a in allowed_new):
            broken.append(f"{rel} was left behind")
    return broken
