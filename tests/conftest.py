"""Shared fixtures: write a spec to a temp file and collect its diagnostics."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from nngraph.spec import check_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n 2``), one torch thread per worker: two workers on two cores, not four threads
    fighting over them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture
def spec_file(tmp_path: Path):
    """Write dedented YAML text to a spec file and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture
def diagnose(spec_file):
    """Validate YAML text; return (graph, errors) where errors are (line, col, message, hint) tuples."""

    def run(text: str, overrides: list[str] | None = None, **kw):
        path = spec_file(text)
        graph, diag = check_spec(path, overrides or [], **kw)
        errors = [(d.pos.line, d.pos.col, d.message, d.hint) for d in diag if d.severity == "error"]
        return graph, errors

    return run
