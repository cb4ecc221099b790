#!/usr/bin/env bash
# Runs Soma Fractal Memory on the embedded default (SQLite + in-process vector
# index in ./.soma) at http://127.0.0.1:9595. Installs into .venv first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/soma serve "$@"
