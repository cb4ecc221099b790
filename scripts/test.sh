#!/usr/bin/env bash
# The whole check: install, start services, ruff, mypy, pytest.
#   scripts/test.sh              everything (what CI runs)
#   scripts/test.sh --quick      skip the slow load and fault suites
#   scripts/test.sh -- -k recall extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --) shift; extra=("$@"); break ;;
    *) extra+=("$1") ;;
  esac
  shift
done
scripts/bootstrap.sh
scripts/services.sh
echo "==> ruff"
.venv/bin/ruff check src tests benchmarks scripts examples
.venv/bin/ruff format --check src tests benchmarks scripts examples
echo "==> mypy (strict, package and benchmarks)"
.venv/bin/mypy
.venv/bin/mypy benchmarks
echo "==> pytest"
export SOMA_REQUIRE_SERVICES=1
# The fast suites run on both cores; the slow load and fault suites (they stop
# and restart servers the other tests use) run afterwards, one at a time.
.venv/bin/pytest -q -n 2 --dist loadfile -m "not slow" "${extra[@]}"
if [ "$quick" = 0 ]; then
  echo "==> pytest (slow: load and fault suites)"
  .venv/bin/pytest -q -m slow "${extra[@]}"
fi
