"""Every spec in specs/ validates cleanly: no errors and no warnings."""

from pathlib import Path

import pytest

from nngraph.spec import check_spec

SPECS = sorted((Path(__file__).resolve().parents[2] / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_zoo_spec_is_valid_without_warnings(path):
    graph, diag = check_spec(path)
    problems = [f"{d.pos}: {d.severity}: {d.message}" for d in diag]
    assert not problems, "\n".join(problems)
    assert graph is not None and graph.nodes and graph.outputs


def test_zoo_has_the_specs_the_catalog_needs():
    assert len(SPECS) >= 1
