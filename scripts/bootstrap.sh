#!/usr/bin/env bash
# Creates .venv and installs the project with every extra (idempotent).
# Re-installs only when pyproject.toml changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.sfm-installed
want="$(sha256sum pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-64)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing somafractalmemory[all,dev] into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[all,dev]"
  echo "$want" > "$stamp"
fi
