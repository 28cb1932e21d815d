"""Mutated zoo specs that validate build and run, or are refused by nngraph (fuzz_build.py has the method)."""

from __future__ import annotations

from pathlib import Path

from fuzz_build import SPECS, fuzz

N_MUTANTS = 150


def test_the_fuzzer_draws_from_most_of_the_zoo():
    assert len(SPECS) >= 25


def test_valid_mutants_build_and_run_or_are_refused_by_nngraph(tmp_path: Path):
    tally = fuzz(N_MUTANTS, seed=0, work=tmp_path)
    assert not tally.findings, f"{len(tally.findings)} findings:\n\n" + "\n\n".join(tally.findings)
    assert sum(tally.counts.values()) == N_MUTANTS
    assert tally.counts["ran"] >= N_MUTANTS // 3  # most mutants stay valid: the test exercises the back end
