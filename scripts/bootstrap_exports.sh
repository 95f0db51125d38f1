#!/usr/bin/env bash
# ms-swift 4.6.0 and LLaMA-Factory 0.9.5, each in a virtual environment of its own under .venv-exports/, for the tests
# that their own dataset loaders read a release's sft/ and grpo/ rows (tests/test_rl_exports.py). Their pins differ
# from ours (transformers <5.20 and <=5.6, trl <1 and <=0.24, peft <0.21 and <=0.18.1) and from each other's:
# LLaMA-Factory wants datasets <=4.0.0, while ms-swift's code imports datasets.features.Json, which datasets 4.7.0
# added. Every version is pinned in scripts/exports-requirements-{swift,llamafactory}.txt.
# torch and torchvision are the main venv's, never downloaded a second time: a .pth file puts a folder of links to
# its torch, torchvision, triton and nvidia/cuda packages on each venv's path, after the venv's own site-packages, so
# pip sees them as installed (and `--constraint` holds them at their versions).
# Idempotent: a second run with unchanged requirements, script and torch does nothing but check.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HIVAU_VENV:-.venv}
EXPORTS=${HIVAU_EXPORTS_VENVS:-.venv-exports}

main_site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
versions=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in ("torch", "torchvision")))')
mkdir -p "$EXPORTS"
links="$(cd "$EXPORTS" && pwd)/torch-from-main"
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
tr ' ' '\n' <<< "$versions" > "$constraints"

link_torch() {
  rm -rf "$links"
  mkdir -p "$links"
  shopt -s nullglob
  for entry in "$main_site"/{torch,torchgen,functorch,torchvision,torchvision.libs,triton,nvidia,cuda} \
               "$main_site"/{torch-,torchvision-,triton-,nvidia_,cuda_}*.dist-info; do
    ln -s "$entry" "$links/"
  done
  shopt -u nullglob
}

install() {  # install NAME DISTRIBUTION: .venv-exports/NAME from scripts/exports-requirements-NAME.txt
  local name=$1 dist=$2 venv="$EXPORTS/$1" requirements="scripts/exports-requirements-$1.txt"
  local stamp="$venv/.hivau-installed" want
  want=$( (cat "$requirements" scripts/bootstrap_exports.sh; echo "$versions") | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$links/torch" ] \
      && "$venv/bin/python" -c "import importlib.metadata as m; m.version('$dist')" 2>/dev/null; then
    return 0
  fi
  echo "[bootstrap] installing $dist into $venv (torch from $VENV: $versions)"
  [ -d "$links/torch" ] || link_torch
  [ -x "$venv/bin/python" ] || "$VENV/bin/python" -m venv "$venv"  # the same Python as torch's
  echo "$links" > "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/hivau-torch-from-main.pth"
  "$venv/bin/python" -m pip install -qq --disable-pip-version-check -r "$requirements" --constraint "$constraints"
  "$venv/bin/python" -m pip check --disable-pip-version-check
  echo "$want" > "$stamp"
}

# the links follow the main venv: made again whenever its torch changed
if [ "$(cat "$EXPORTS/.torch-linked" 2>/dev/null)" != "$versions" ]; then
  link_torch
  echo "$versions" > "$EXPORTS/.torch-linked"
fi
install swift ms-swift
install llamafactory llamafactory
