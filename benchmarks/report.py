"""Shared by the benchmarks: BENCHMARKS.md's sections (each script rewrites only its own) and a checkout laid out as
the installed package (to run an older commit beside HEAD)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Callable, Optional

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


def measured_call(call: Callable[[], object], profile_to: Optional[str] = None, top: int = 15) -> tuple[object, dict]:
    """`call()` once in this process: its result, and its wall seconds with the process's peak RSS before and after
    (MB, ru_maxrss); with `profile_to`, a cProfile report there (`top` lines by cumulative, then own time)."""
    import cProfile
    import gc
    import io
    import pstats
    import resource

    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    profiler = cProfile.Profile() if profile_to else None
    if profiler:
        profiler.enable()
    started = time.perf_counter()
    result = call()
    wall = time.perf_counter() - started
    if profiler:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
        Path(profile_to).write_text(text.getvalue())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result, {"wall_s": wall, "peak_mb": peak, "rss_before_call_mb": rss_before}


def run_child(script: Path, pythonpath: Path, spec: dict) -> dict:
    """`script --child SPEC` in a fresh process with one version of hivau on its path (no other), from a neutral
    folder; the JSON of its last output line."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PREFECT_API_URL")}
    env.update({"PYTHONPATH": str(pythonpath), "PYTHONDONTWRITEBYTECODE": "1"})
    proc = subprocess.run([sys.executable, str(script), "--child", json.dumps(spec)], env=env,
                          cwd=tempfile.gettempdir(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['op']} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])

