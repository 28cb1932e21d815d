#!/usr/bin/env bash
# Refresh requirements.lock: every package (transitive ones too) that `pip install -e '.[dev]'` needs on these
# machines (Linux x86_64, CPython 3.11), resolved by uv from pyproject.toml's ranges and scripts/lock-pins.txt.
# scripts/setup.sh installs exactly this file. Run after changing a dependency in pyproject.toml:
#     bash scripts/lock.sh            # keep what is locked where the ranges allow
#     bash scripts/lock.sh --upgrade  # move everything to the newest versions the ranges allow
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VENV=${UV_VENV:-.venv-tools}
if [ ! -x "$UV_VENV/bin/uv" ]; then
  python3 -m venv "$UV_VENV"
  "$UV_VENV/bin/python" -m pip install -q 'uv>=0.9,<1'
fi
# --find-links: where the CPU torch wheel lies here (pip's own config on these machines points there too)
"$UV_VENV/bin/uv" pip compile pyproject.toml --extra dev \
  --constraint scripts/lock-pins.txt --find-links /opt/wheels \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --no-header --annotation-style line --quiet "$@" -o requirements.lock
{ printf '%s\n' \
    "# The complete lock for these machines (Linux x86_64, CPython 3.11), generated from pyproject.toml's ranges" \
    "# by uv: refresh with \`bash scripts/lock.sh\` (or --upgrade); scripts/setup.sh installs exactly this."
  cat requirements.lock; } > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) packages"
