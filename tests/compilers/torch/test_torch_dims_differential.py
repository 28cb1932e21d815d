"""validate --strict ok => build + forward succeed at two random symbol assignments (dims_differential.py has the
method). NNGRAPH_DIMS_MUTANTS sets the number of mutants (default 200; the report ran thousands)."""

from __future__ import annotations

import os
from pathlib import Path

from dims_differential import SPECS, mutants, zoo

N_MUTANTS = int(os.environ.get("NNGRAPH_DIMS_MUTANTS", "200"))


def test_every_zoo_spec_that_validates_builds_and_runs_at_random_sizes(tmp_path: Path):
    tally = zoo(tmp_path)
    assert not tally.findings, f"{len(tally.findings)} findings:\n\n" + "\n\n".join(tally.findings)
    assert sum(tally.counts.values()) == len(SPECS)
    assert tally.counts["ran"] >= len(SPECS) - 2  # the zoo validates: nearly every spec is exercised


def test_mutants_that_validate_build_and_run_at_random_sizes(tmp_path: Path):
    tally = mutants(N_MUTANTS, seed=0, work=tmp_path)
    assert not tally.findings, f"{len(tally.findings)} findings:\n\n" + "\n\n".join(tally.findings)
    assert sum(tally.counts.values()) == N_MUTANTS
    assert tally.counts["ran"] >= N_MUTANTS // 3  # most mutants stay valid: the property is exercised
    assert tally.counts["warned at validate"] >= 1  # the shape mutations reach undecidable pairs
