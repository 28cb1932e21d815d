#!/usr/bin/env bash
# Create .venv and install exactly requirements.lock (the complete lock: every package pinned), then nngraph
# itself in editable mode without re-resolving. Idempotent: reinstalls only when the lock or the packaging changed.
# Refresh the lock with `bash scripts/lock.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# the `nngraph view` tests drive Debian's chromium through Playwright (never `playwright install`)
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "setup.sh: could not install chromium (the nngraph view tests need /usr/bin/chromium)" >&2
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.nngraph-installed
want=$(cat pyproject.toml setup.py requirements.lock | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q --no-deps -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  .venv/bin/python -m pip check
  echo "$want" > "$stamp"
fi
