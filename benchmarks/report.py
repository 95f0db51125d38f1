"""Shared by the benchmarks: BENCHMARKS.md's sections (each script rewrites only its own) and a checkout laid out as
the installed package (to run an older commit beside HEAD)."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(name: str, text: str) -> None:
    """Replace the text between `<!-- begin:name -->` and `<!-- end:name -->` (appended when absent)."""
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    current = REPORT.read_text() if REPORT.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    updated = pattern.sub(lambda _: block, current) if pattern.search(current) else current.rstrip() + "\n\n" + block + "\n"
    REPORT.write_text(updated)


def lay_out_as_installed(src: Path, pkg: Path) -> Path:
    """Copy a checkout's folders into `pkg/hivau/...` as pyproject.toml's package-dir maps them (parents before
    children: "hivau" first, then "hivau.tasks" into it), so `PYTHONPATH=pkg` imports that version. Returns pkg."""
    package_dir = tomllib.loads((src / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(package_dir.items(), key=lambda kv: kv[0].count(".")):
        shutil.copytree(src / folder, pkg.joinpath(*package.split(".")), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return pkg

