#!/usr/bin/env bash
# Static checks beside the tests: ruff (pyflakes, import order) and import-linter's layer and cycle contracts.
# The repository keeps flows/, tasks/, models/... at its root and installs them under `hivau` (package-dir), which
# import-linter cannot follow, so its graph is built on a copy of the sources laid out as the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HIVAU_VENV:-.venv}
"$VENV/bin/ruff" check --no-cache .
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
"$VENV/bin/python" - "$tree" <<'PY'
import shutil, sys, tomllib
from pathlib import Path

dirs = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
for package, folder in dirs.items():
    dst = Path(sys.argv[1], *package.split("."))
    for src in Path(folder).glob("*.py"):
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / src.name)
    for sub in Path(folder).glob("*/__init__.py"):  # stage subpackages (tasks/build, ...)
        shutil.copytree(sub.parent, dst / sub.parent.name, ignore=shutil.ignore_patterns("__pycache__"),
                        dirs_exist_ok=True)
PY
config=$(pwd)/pyproject.toml
(cd "$tree" && PYTHONPATH="$tree" "$OLDPWD/$VENV/bin/lint-imports" --no-cache "$config")
