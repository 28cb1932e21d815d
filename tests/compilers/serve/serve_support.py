"""Helpers of the serve tests: the small model sizes and their export; the server process itself is
:class:`nngraph.compilers.serve.process.ServerProcess` (shared with bench/serve.py).

A plain module (not conftest) so tests import it by a unique name.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SPECS = ROOT / "specs"
#: the small sizes the zoo specs name in their ``# small-sizes:`` comments
BERT = ["vocab=50", "d_model=16", "heads=2", "ffn=32", "layers=2", "max_len=16"]
GPT = ["vocab=20", "d_model=16", "heads=2", "layers=1", "ctx=16"]


def export_small(name: str, overrides: list[str], out: Path, **options) -> Path:
    """The zoo spec ``name`` at small sizes exported to ``out`` (no torch comparison: the ONNX tests do that)."""
    from nngraph.compilers.onnx.export import export_spec

    export_spec(SPECS / f"{name}.yaml", out, overrides, verify=False, **options)
    return out
