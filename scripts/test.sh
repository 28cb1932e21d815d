#!/usr/bin/env bash
# Set everything up, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# two worker processes, one torch thread each (tests/conftest.py); worksteal keeps both busy through the long
# training tests at the end. Extra arguments go to pytest (e.g. `-n 0` for one process, a test path).
exec .venv/bin/python -m pytest -n 2 --dist worksteal "$@"
