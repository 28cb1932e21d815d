"""The planner (compilers/passes + the kernel registry) decides without torch, and torch kernels do not import it.

Each check runs in a fresh interpreter so modules imported by other tests cannot hide an import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

_RUN = """
import json, sys
import nngraph.compilers.torch.ops.attention_kernels
print("@@" + json.dumps({m: m in sys.modules for m in ("nngraph.compilers.passes", "nngraph.compilers.passes.lowering")}))
"""


def _loaded(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("@@"))[2:])


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(("." * node.level) + node.module)
    return out


def test_the_planner_and_the_kernel_registry_never_import_torch():
    """compilers/passes and compilers/kernels decide from data (only the target probe in compilers/targets asks
    the installed torch which features it has); the kernels' torch code is named by a string and loaded lazily."""
    files = sorted((ROOT / "compilers" / "passes").rglob("*.py")) + sorted((ROOT / "compilers" / "kernels").rglob("*.py"))
    assert len(files) > 10
    bad = {str(f.relative_to(ROOT)): sorted(m for m in _imports(f) if m.split(".")[0] == "torch" or "compilers.torch" in m
                                           or m.startswith("..torch") or m.startswith("...torch"))
           for f in files}
    # compile_for, which hands a lowered graph to the torch back end, lives above both (compilers/lowered.py)
    assert {f: m for f, m in bad.items() if m} == {}


def test_the_torch_kernels_import_no_planner():
    assert _loaded(_RUN) == {"nngraph.compilers.passes": False, "nngraph.compilers.passes.lowering": False}


_PLAN_ORT = """
import json, sys
from nngraph import load_spec
from nngraph.compilers.passes import explain, format_explain
graph = load_spec("specs/gpt_char.yaml")
for target in ("ort-cpu", "cpu"):
    format_explain(explain(graph, target), target)
print("@@" + json.dumps({m: m in sys.modules for m in ("onnx", "onnxscript", "nngraph.compilers.onnx.emitters")}))
"""


def test_the_planner_and_the_kernel_registry_never_import_onnx():
    """The ONNX kernels are registry entries too: their checks read data, their emitters (onnx, torch) are named
    by a string; planning for an ONNX Runtime target loads neither the onnx package nor an emitter."""
    files = sorted((ROOT / "compilers" / "passes").rglob("*.py")) + sorted((ROOT / "compilers" / "kernels").rglob("*.py"))
    bad = {str(f.relative_to(ROOT)): sorted(m for m in _imports(f) if m.split(".")[0] in ("onnx", "onnxruntime")
                                           or "emitters" in m) for f in files}
    assert {f: m for f, m in bad.items() if m} == {}
    assert _loaded(_PLAN_ORT) == {"onnx": False, "onnxscript": False, "nngraph.compilers.onnx.emitters": False}
