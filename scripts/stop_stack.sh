#!/usr/bin/env bash
# Stops what scripts/start_stack.sh started (the pids in .soma/stack.pids), newest first:
# SIGTERM (workers drain, the API finishes its requests), then SIGKILL after 30 s.
set -uo pipefail
cd "$(dirname "$0")/.."
pids=.soma/stack.pids
[ -s "$pids" ] || { echo "nothing to stop"; exit 0; }
tac "$pids" | while read -r pid name; do
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "==> stopped $name (pid $pid)"
  fi
done
rm -f "$pids"
