#!/usr/bin/env bash
# The main job: a local Prefect server, the served deployments, the demo data, and one
# `prefect deployment run build-hivau/local` on it, waited for. `make stop` ends the background services.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE=${HIVAU_STATE:-$ROOT/.state}
PORT=${HIVAU_PREFECT_PORT:-4200}
BIN=$ROOT/.venv/bin
mkdir -p "$STATE/logs" "$STATE/pids"
export PREFECT_HOME="$STATE/prefect"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_ENABLED=true PREFECT_LOGGING_LEVEL=INFO

healthy() { "$BIN/python" - "$PREFECT_API_URL" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).read()
PY
}
running() { [ -f "$STATE/pids/$1.pid" ] && kill -0 "$(cat "$STATE/pids/$1.pid")" 2>/dev/null; }

if ! healthy; then
  echo "[run] starting Prefect server on 127.0.0.1:$PORT (database under $PREFECT_HOME)"
  nohup "$BIN/prefect" server start --host 127.0.0.1 --port "$PORT" >"$STATE/logs/prefect-server.log" 2>&1 &
  echo $! >"$STATE/pids/prefect-server.pid"
  for _ in $(seq 1 120); do healthy && break; sleep 1; done
  healthy || { echo "[run] Prefect server did not come up; see $STATE/logs/prefect-server.log" >&2; exit 1; }
fi

if ! running serve; then
  echo "[run] serving deployment build-hivau/local"
  nohup "$BIN/python" -m hivau.flows.serve >"$STATE/logs/serve.log" 2>&1 &
  echo $! >"$STATE/pids/serve.pid"
fi
for _ in $(seq 1 60); do "$BIN/prefect" deployment inspect build-hivau/local >/dev/null 2>&1 && break; sleep 1; done

if [ ! -f "$STATE/demo/annotations.json" ]; then
  "$BIN/hivau" demo-data "$STATE/demo"
fi

PARAMS=$(printf '{"videos_dir": "%s", "annotations": "%s", "format": "hivau", "workspace": "%s"}' \
  "$STATE/demo/videos" "$STATE/demo/annotations.json" "$STATE/workspace")
echo "[run] prefect deployment run build-hivau/local"
"$BIN/prefect" deployment run build-hivau/local --params "$PARAMS" --watch --watch-timeout 1800

"$BIN/hivau" summary --workspace "$STATE/workspace"
cat <<MSG

Outputs
  manifests (parquet): $STATE/workspace/manifests/{videos,events,clips,captions,summaries,qa,motion_phrases,quarantine}.parquet
  quarantine report:   $STATE/workspace/manifests/quarantine.md
  cut media:           $STATE/workspace/media/{events,clips}/
  Prefect UI:          http://127.0.0.1:$PORT   (artifacts: build-hivau-summary, build-hivau-progress, build-hivau-llm-usage)
Stop the server and the deployment runner with: make stop
MSG
