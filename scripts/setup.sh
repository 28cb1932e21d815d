#!/usr/bin/env bash
# Create .venv and install exactly requirements.lock (the complete lock: every package pinned), then nngraph
# itself in editable mode without re-resolving. Idempotent: reinstalls only when the lock or the packaging changed.
# Refresh the lock with `bash scripts/lock.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The `nngraph view` tests drive Debian's chromium through Playwright (never `playwright install`, nothing is
# downloaded at test time). Install it when missing, as root or through password-less sudo; when that cannot be
# done, .venv/.chromium-unavailable says why, and only then do those tests skip (with that reason) instead of fail.
note=.venv/.chromium-unavailable
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
  if ! command -v apt-get >/dev/null; then
    why="no apt-get here to install Debian's chromium package"
  elif [ "$sudo" = none ]; then
    why="not root and no password-less sudo to run apt-get install chromium"
  elif ! { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
      >.venv/chromium-install.log 2>&1; then
    why="apt-get install chromium failed (see .venv/chromium-install.log)"
  fi
fi
if [ -x /usr/bin/chromium ]; then
  rm -f "$note"
else
  echo "setup.sh: no /usr/bin/chromium: ${why:-the chromium package installed no /usr/bin/chromium}" | tee "$note" >&2
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
