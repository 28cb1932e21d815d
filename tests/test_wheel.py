"""The wheel works outside the repository: scripts/wheel_smoke.sh builds it, installs the light core and then
``[all]`` into fresh venvs (dependencies from the package registry, pinned by requirements.lock, as a user's
pip would fetch them), and from a folder holding a user's own ``cli.py`` and ``compilers/`` runs validate,
schema, inspect, graph, view (its page inlines the vendored JS read from the installed package data, whose
LICENSE the wheel carries), compile --explain, train --data shakespeare, export and infer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_installs_under_one_name_and_runs_from_outside_the_repository(tmp_path: Path):
    # the machine's own pip settings (PIP_FIND_LINKS: where the CPU torch wheel lies) stay; PATH without the dev venv
    env_python = {**os.environ, "PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(["bash", str(ROOT / "scripts" / "wheel_smoke.sh"), str(tmp_path / "smoke")],
                         capture_output=True, text=True, timeout=900, env=env_python)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "wheel smoke test passed" in run.stdout
    view = r"^view: \d+ KiB page from .*/core/lib/python[\d.]+/site-packages/nngraph/view_assets$"
    assert re.search(view, run.stdout, re.M), run.stdout[-2000:]  # read from the install, not the repository
    assert "Traceback" not in out
    core_mb = int(re.search(r"core environment: (\d+) MB", run.stdout).group(1))
    assert core_mb <= 60, f"the core environment grew to {core_mb} MB (goal: 60)"
    assert "pip install 'nngraph[torch]'" in run.stdout
