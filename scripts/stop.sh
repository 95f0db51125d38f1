#!/usr/bin/env bash
# Stop what `make run` started in the background.
set -uo pipefail
cd "$(dirname "$0")/.."
STATE=${HIVAU_STATE:-$(pwd)/.state}
for name in serve labelstudio prefect-server; do
  pidfile="$STATE/pids/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    echo "[stop] stopped $name ($pid)"
  fi
  rm -f "$pidfile"
done
