"""Fixtures for the ONNX back-end tests: small versions of the zoo specs, randomized weights, exports shared per module."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from onnx_support import ROOT, SPECS, randomize, small_overrides  # noqa: F401 - re-exported for fixtures


@pytest.fixture(scope="session")
def onnx_out(tmp_path_factory):
    """A session-wide folder for exported files."""
    return tmp_path_factory.mktemp("onnx")
