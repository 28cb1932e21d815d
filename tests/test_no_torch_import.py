"""The front end stays light: validating specs never imports torch or onnx, and networkx loads only for drawing/analysis.

Each check runs in a fresh interpreter so modules imported by other tests cannot hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(str(p) for p in (ROOT / "specs").glob("*.yaml"))
HEAVY = ("torch", "onnx", "onnxruntime")

_REPORT = """
import json, sys
loaded = {m: (m in sys.modules and sys.modules[m] is not None)
          for m in ("torch", "onnx", "onnxruntime", "networkx", "rich", "typer", "click")}
print("@@" + json.dumps({"loaded": loaded, "code": CODE}))
"""


def _run(body: str) -> dict:
    code = "CODE = None\n" + body + _REPORT
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("@@"))
    return json.loads(line[2:])


def test_zoo_is_not_empty():
    assert SPECS


@pytest.mark.parametrize("argv", [["validate", "-q"], ["--debug", "validate", "--format", "json"]], ids=["plain", "debug"])
def test_cli_validate_on_every_spec_imports_no_torch_onnx_networkx_or_rich(argv):
    body = (
        "import sys\n"
        f"sys.argv = ['/venv/bin/nngraph', *{argv!r}, *{SPECS!r}]\n"
        "try:\n"
        "    from nngraph.cli import main\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    CODE = exc.code\n"
    )
    report = _run(body)
    assert report["code"] in (0, 1)  # validity itself is tested in tests/specs
    loaded = report["loaded"]
    assert not [m for m in HEAVY if loaded[m]], loaded
    assert not loaded["networkx"], "validate must not import networkx (~0.3 s)"
    assert not loaded["rich"], "validate must not import rich (~150 ms)"


def test_cli_validate_usage_errors_still_hide_rich():
    # typer reports the usage error (exit 2) in plain text: rich stays unimported
    body = (
        "import sys\n"
        f"sys.argv = ['/venv/bin/nngraph', 'validate', '--no-such-option', {SPECS[0]!r}]\n"
        "try:\n"
        "    from nngraph.cli import main\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    CODE = exc.code\n"
    )
    report = _run(body)
    assert report["code"] == 2 and report["loaded"]["typer"] and not report["loaded"]["rich"]


def test_api_check_spec_on_every_spec_imports_no_torch_onnx_or_networkx():
    body = (
        "from nngraph import check_spec\n"
        f"for path in {SPECS!r}:\n"
        "    check_spec(path)\n"
        "from nngraph import load_spec\n"
        f"load_spec({SPECS[0]!r}).total_params\n"
    )
    loaded = _run(body)["loaded"]
    assert not [m for m in HEAVY if loaded[m]], loaded
    assert not loaded["networkx"]


def test_import_and_registry_do_not_import_networkx():
    body = (
        "import nngraph\n"
        "from nngraph.registry import families, registry\n"
        "assert registry() and families()\n"
        "from nngraph.schema import json_schema\n"
        "json_schema()\n"
    )
    loaded = _run(body)["loaded"]
    assert not loaded["networkx"] and not [m for m in HEAVY if loaded[m]], loaded


def test_inspect_draw_and_docs_import_no_torch_onnx_or_networkx():
    body = (
        "from nngraph import load_spec\n"
        "from nngraph.inspect import format_table, summarize\n"
        "from nngraph.draw import to_dot, to_mermaid\n"
        "from nngraph.docs import spec_reference\n"
        f"g = load_spec({SPECS[0]!r})\n"
        "format_table(summarize(g)); to_dot(g); to_mermaid(g); spec_reference()\n"
    )
    loaded = _run(body)["loaded"]
    assert not loaded["networkx"] and not [m for m in HEAVY if loaded[m]], loaded


def test_to_networkx_is_where_networkx_loads():
    body = (
        "from nngraph import load_spec\n"
        f"g = load_spec({SPECS[0]!r}).to_networkx()\n"
        "assert g.number_of_nodes() > 0\n"
    )
    assert _run(body)["loaded"]["networkx"]
