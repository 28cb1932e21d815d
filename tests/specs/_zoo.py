"""Helpers shared by the zoo-spec tests: load a spec that must be clean, count torch parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from nngraph.limits import Limits
from nngraph.spec import check_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"


def load_clean(name: str, overrides: list[str] | None = None, limits: Limits | None = None):
    """The graph of ``specs/<name>.yaml``; fails the test on any error or warning."""
    graph, diag = check_spec(SPECS / f"{name}.yaml", overrides or [], **({"limits": limits} if limits else {}))
    problems = [f"{d.pos}: {d.message}" for d in diag]
    assert not problems, problems
    return graph


def count(*parts: nn.Module | nn.Parameter) -> int:
    """Parameters of the given modules and loose parameters."""
    return sum(p.numel() if isinstance(p, nn.Parameter) else sum(q.numel() for q in p.parameters()) for p in parts)


@pytest.fixture
def meta_device():
    """Build torch reference models on the meta device (no memory): use with autouse in a module."""
    with torch.device("meta"):
        yield
