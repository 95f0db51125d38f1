#!/usr/bin/env bash
# The main job: a local Prefect server and Label Studio, the served deployments, the demo data, one
# `prefect deployment run build-hivau/local` (its drafts end up waiting in Label Studio), then a demo release
# (drafts included) whose event starts `retrain`. `make stop` ends the background services.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE=${HIVAU_STATE:-$ROOT/.state}
PORT=${HIVAU_PREFECT_PORT:-4200}
BIN=$ROOT/.venv/bin
WS=$STATE/workspace
LS_PORT=${HIVAU_LS_PORT:-8080}
mkdir -p "$STATE/logs" "$STATE/pids" "$WS/media"
export PREFECT_HOME="$STATE/prefect"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_ENABLED=true PREFECT_LOGGING_LEVEL=INFO

healthy() { "$BIN/python" - "$PREFECT_API_URL" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).read()
PY
}
running() { [ -f "$STATE/pids/$1.pid" ] && kill -0 "$(cat "$STATE/pids/$1.pid")" 2>/dev/null; }

# Label Studio first: it takes the longest to come up (about 40 s), so it starts while the rest does.
LS_STATE=$STATE/labelstudio
if [ -z "${LABEL_STUDIO_URL:-}" ]; then
  export LABEL_STUDIO_URL="http://127.0.0.1:$LS_PORT"
  export LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$WS/media"
  NEW_ACCOUNT=$("$BIN/python" -c "
from pathlib import Path; from hivau.labelstudio_local import credentials
print('yes' if credentials(Path('$LS_STATE'))[1] else 'no')")
  export LABEL_STUDIO_API_KEY=$("$BIN/python" -c "import json; print(json.load(open('$LS_STATE/credentials.json'))['token'])")
  if ! running labelstudio; then
    echo "[run] starting Label Studio on $LABEL_STUDIO_URL (its own venv, database under $LS_STATE, media from $WS/media)"
    nohup "$BIN/hivau" labelstudio --state "$LS_STATE" --document-root "$WS/media" --port "$LS_PORT" \
      >"$STATE/logs/labelstudio.log" 2>&1 &
    echo $! >"$STATE/pids/labelstudio.pid"
  fi
else
  NEW_ACCOUNT=external
  echo "[run] using the Label Studio at $LABEL_STUDIO_URL"
fi

if ! healthy; then
  echo "[run] starting Prefect server on 127.0.0.1:$PORT (database under $PREFECT_HOME)"
  nohup "$BIN/prefect" server start --host 127.0.0.1 --port "$PORT" >"$STATE/logs/prefect-server.log" 2>&1 &
  echo $! >"$STATE/pids/prefect-server.pid"
  for _ in $(seq 1 120); do healthy && break; sleep 1; done
  healthy || { echo "[run] Prefect server did not come up; see $STATE/logs/prefect-server.log" >&2; exit 1; }
fi

"$BIN/python" -c "
from hivau.labelstudio_local import wait_healthy; wait_healthy('$LABEL_STUDIO_URL', timeout_s=300)" \
  || { echo "[run] Label Studio did not come up; see $STATE/logs/labelstudio.log" >&2; exit 1; }

if ! running serve; then
  echo "[run] serving deployments build-hivau, sync-reviews, publish-release, retrain and propose-events (/local)"
  # retrain's defaults for the demo: a short tiny-preset run (the learning check trains longer)
  HIVAU_RETRAIN_SETTINGS=${HIVAU_RETRAIN_SETTINGS:-'{"epochs": 15, "max_minutes": 6}'} \
    nohup "$BIN/python" -m hivau.flows.serve >"$STATE/logs/serve.log" 2>&1 &
  echo $! >"$STATE/pids/serve.pid"
fi
for _ in $(seq 1 60); do "$BIN/prefect" deployment inspect build-hivau/local >/dev/null 2>&1 && break; sleep 1; done

if [ ! -f "$STATE/demo/annotations.json" ]; then
  "$BIN/hivau" demo-data "$STATE/demo"
fi

PARAMS=$(printf '{"videos_dir": "%s", "annotations": "%s", "format": "hivau", "workspace": "%s", "review": {"dataset": "demo"}}' \
  "$STATE/demo/videos" "$STATE/demo/annotations.json" "$WS")
echo "[run] prefect deployment run build-hivau/local"
"$BIN/prefect" deployment run build-hivau/local --params "$PARAMS" --watch --watch-timeout 1800

"$BIN/hivau" summary --workspace "$WS"

# Pull whatever reviewers already did (nothing on a first run), then publish a demo release with the drafts.
SYNC=$(printf '{"workspace": "%s", "review": {"enabled": "on", "dataset": "demo"}}' "$WS")
"$BIN/prefect" deployment run sync-reviews/local --params "$SYNC" --watch --watch-timeout 600 >/dev/null
echo "[run] prefect deployment run publish-release/local (include_unreviewed: the demo has no reviews yet)"
RELEASE=$(printf '{"workspace": "%s", "release": {"include_unreviewed": true}}' "$WS")
"$BIN/prefect" deployment run publish-release/local --params "$RELEASE" --watch --watch-timeout 600 >/dev/null
LATEST=$(ls -d "$WS"/releases/v[0-9]* | sort | tail -1)
"$BIN/python" - "$LATEST" <<'PY'
import json, sys
from hivau.flows.release import wait_for_retrain
from hivau.models.registry import read_registry
m = json.load(open(sys.argv[1] + "/manifest.json"))
print(f"[run] release {m['name']}: {m['counts']['rows']} rows {m['counts']['rows_by_split']}, "
      f"provenance {m['counts']['rows_by_provenance']}")
print("[run] the release event started retrain (training the tiny preset, then evaluating; a few minutes)")
run = wait_for_retrain(sys.argv[1], timeout_s=1200)
print(f"[run] retrain run {run['id']}: {run['state']}")
models = read_registry(sys.argv[1] + "/../../models")["models"]
last = models[-1] if models else None
if last:
    print(f"[run] model {last['name']}: {'registered' if last['registered'] else 'not registered'} "
          f"({'; '.join(last['reasons'])}); headline {last['headline']}, untrained start "
          f"{last.get('untrained_headline')}")
    print(f"[run] model folder: {last['path']}  (metrics.md beside it)")
PY
cat <<MSG

Outputs
  manifests (parquet): $WS/manifests/{videos,events,clips,captions,summaries,qa,motion_phrases,reviews,quarantine}.parquet
  quarantine report:   $WS/manifests/quarantine.md
  cut media:           $WS/media/{events,clips,review,videos}/
  releases:            $WS/releases/  (latest: $LATEST)
  Prefect UI:          http://127.0.0.1:$PORT   (artifacts: build-hivau-summary, build-hivau-llm-usage, hivau-release, retrain-report, retrain-metrics)

Review the drafts in Label Studio: $LABEL_STUDIO_URL  (projects "hivau demo clip|event|video review")
MSG
if [ "$NEW_ACCOUNT" = yes ]; then
  "$BIN/python" -c "import json; c = json.load(open('$LS_STATE/credentials.json')); print(f'  account (shown once; kept in $LS_STATE/credentials.json): {c[\"email\"]} / {c[\"password\"]}')"
elif [ "$NEW_ACCOUNT" = no ]; then
  echo "  account: see $LS_STATE/credentials.json (email and password)"
fi
cat <<MSG
Then bring the reviews back and publish the next release:
  PREFECT_API_URL=$PREFECT_API_URL .venv/bin/prefect deployment run sync-reviews/local --params '$SYNC'
  PREFECT_API_URL=$PREFECT_API_URL .venv/bin/hivau release --workspace $WS   (reviewed text only; --include-unreviewed adds drafts)
Train and evaluate by hand, or let the registered model caption and propose:
  .venv/bin/hivau-train --release $LATEST --preset tiny --out .state/runs/tiny
  .venv/bin/hivau-eval --model .state/runs/tiny/model --release $LATEST
  .venv/bin/hivau propose --workspace $WS --no-push
Stop the servers and the deployment runner with: make stop
MSG
