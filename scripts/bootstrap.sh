#!/usr/bin/env bash
# Install what hivau needs on a fresh machine: ffmpeg/ffprobe and a virtual environment with the project.
# Idempotent: a second run with an unchanged pyproject.toml does nothing but check.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HIVAU_VENV:-.venv}
PYTHON=${PYTHON:-python3}

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[bootstrap] installing ffmpeg with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "[bootstrap] ffmpeg and ffprobe are required but not on PATH." >&2
    echo "            Debian/Ubuntu: sudo apt-get install -y ffmpeg    macOS: brew install ffmpeg" >&2
    exit 1
  fi
fi

# Debian's chromium and its driver, for the review UI test (never a browser downloaded by a tool).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[bootstrap] installing chromium and chromium-driver with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null \
      || echo "[bootstrap] chromium could not be installed; the browser test will be skipped" >&2
  else
    echo "[bootstrap] chromium/chromedriver not found; the browser test will be skipped" >&2
  fi
fi

# A Java runtime for METEOR (pycocoevalcap runs the reference jar); hivau-eval reports METEOR as missing without.
if ! command -v java >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[bootstrap] installing a Java runtime (default-jre-headless) for METEOR"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq default-jre-headless >/dev/null \
      || echo "[bootstrap] no Java runtime: hivau-eval will leave METEOR out" >&2
  else
    echo "[bootstrap] java not found; hivau-eval will leave METEOR out" >&2
  fi
fi

"$PYTHON" - <<'PY' || { echo "[bootstrap] Python 3.11 or 3.12 is required (found $($PYTHON --version 2>&1))" >&2; exit 1; }
import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)
PY

# Label Studio lives in a virtual environment of its own: its Django stack pins differ from ours.
LS_VENV=${HIVAU_LABEL_STUDIO_VENV:-.venv-ls}
LS_VERSION=1.23.2
if [ "$("$LS_VENV/bin/python" -c "import importlib.metadata as m; print(m.version('label-studio'))" 2>/dev/null)" != "$LS_VERSION" ]; then
  echo "[bootstrap] installing label-studio==$LS_VERSION into $LS_VENV"
  [ -x "$LS_VENV/bin/python" ] || "$PYTHON" -m venv "$LS_VENV"
  "$LS_VENV/bin/python" -m pip install -qq --upgrade pip
  "$LS_VENV/bin/python" -m pip install -qq "label-studio==$LS_VERSION"
fi

stamp="$VENV/.hivau-installed"
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import hivau" 2>/dev/null; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
echo "[bootstrap] installing hivau and its dependencies into $VENV"
"$VENV/bin/python" -m pip install -qq --upgrade pip
"$VENV/bin/python" -m pip install -qq -e ".[dev]"
echo "$want" > "$stamp"
