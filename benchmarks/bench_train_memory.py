"""Peak memory of a training run against the release's size: the demo release (1 set) and one of 8 sets (8x the
rows), trained with the same settings; the bar is a peak within 10% (frames are decoded per step in DataLoader
workers, the scorer reads one video at a time, so nothing should grow with the row count).

    .venv/bin/python benchmarks/bench_train_memory.py --work .state/bench_train_memory [--vlm]

Peak RSS is of the whole process tree (the trainer and its decoding workers), polled every 0.2 s; the
trainer's own peak is recorded beside it. Results go to
benchmarks/results/train_memory.json and the `train-memory` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from bench_trainer import BIN, make_release, release_rows  # noqa: E402
from report import write_section  # noqa: E402


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(RSS of the process and all its descendants, RSS of the process alone), in bytes."""
    try:
        own = proc.memory_info().rss
        children = proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    total = own
    for child in children:
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total, own


def measure(cmd: list[str], log: Path) -> dict:
    """Run cmd, polling its process tree's memory; returns peaks in MB and the wall time."""
    started = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        watched = psutil.Process(proc.pid)
        peak_tree = peak_main = 0
        while proc.poll() is None:
            tree, own = tree_rss(watched)
            peak_tree, peak_main = max(peak_tree, tree), max(peak_main, own)
            time.sleep(0.2)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    return {"peak_tree_mb": round(peak_tree / 2**20), "peak_main_mb": round(peak_main / 2**20),
            "seconds": round(time.time() - started, 1)}


def shared_flags(steps: int) -> list[str]:
    """The settings both release sizes train with."""
    return ["--max-steps", str(steps), "--batch-size", "4", "--scorer-epochs", "2", "--workers", "2",
            "--num-threads", "1", "--save-every", "100000", "--log-every", "10"]


def train_cmd(release: Path, out: Path, preset: str, options: dict, steps: int) -> list[str]:
    return [str(BIN / "hivau-train"), "--release", str(release), "--out", str(out), "--preset", preset,
            "--preset-options", json.dumps(options), *shared_flags(steps)]


def section(results: dict) -> str:
    lines = ["## Training memory against release size (`benchmarks/bench_train_memory.py`, this 2-core CPU)", "",
             f"Measured {results['date']}. Two demo releases, {results['sizes']['1x']['sets']} and "
             f"{results['sizes']['8x']['sets']} sets of scenes, trained with the same settings "
             f"(`{results['settings']}`); peak RSS of the trainer and its DataLoader workers together, polled every "
             "0.2 s. Bar: the 8x release's peak within 10% of the 1x release's.", "",
             "| preset | release | train rows | peak RSS, tree | trainer alone | seconds |",
             "|---|---|---|---|---|---|"]
    for preset, runs in results["runs"].items():
        for size in ("1x", "8x"):
            r = runs[size]
            lines.append(f"| {preset} | {size} | {results['sizes'][size]['rows']['train']} | {r['peak_tree_mb']} MB | "
                         f"{r['peak_main_mb']} MB | {r['seconds']} |")
    lines += ["", "| preset | peak 8x / 1x (tree) | trainer alone | bar |", "|---|---|---|---|"]
    for preset, runs in results["runs"].items():
        lines.append(f"| {preset} | {runs['ratio_tree']:.3f}x | {runs['ratio_main']:.3f}x | <= 1.10x |")
    lines += ["", "The optimiser steps are the same in both runs; the 8x run's scorer stage reads 8x the videos "
              "(one at a time) and its frame plan covers 8x the items. Wall times are for context, not a speed "
              "figure; memory is what the bar is about."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(".state/bench_train_memory"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--vlm", action="store_true", help="also the vlm preset on a tiny Qwen2-VL built here")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    sizes = {"1x": 1, "8x": 8}
    releases = {k: make_release(work / k, n) for k, n in sizes.items()}
    presets = {"tiny": {"image_size": 64}}
    if args.vlm:
        from tiny_video_vlms import build_tiny_qwen2_vl

        folder = work / "tiny-qwen2-vl"
        if not (folder / "config.json").is_file():
            build_tiny_qwen2_vl(folder)
        presets["vlm"] = {"model_path": str(folder), "n_frames": 4, "frame_size": 64,
                          "scorer": {"stride": 16, "d_model": 32, "epochs": 2}}
    runs: dict = {}
    for preset, options in presets.items():
        runs[preset] = {}
        for size, release in releases.items():
            out = work / "runs" / f"{preset}-{size}"
            shutil.rmtree(out, ignore_errors=True)  # a fresh run: no resume, no frame cache
            cmd = train_cmd(release, out, preset, options, args.steps)
            runs[preset][size] = measure(cmd, work / f"{preset}-{size}.log")
            print(preset, size, runs[preset][size], flush=True)
        runs[preset]["ratio_tree"] = runs[preset]["8x"]["peak_tree_mb"] / runs[preset]["1x"]["peak_tree_mb"]
        runs[preset]["ratio_main"] = runs[preset]["8x"]["peak_main_mb"] / runs[preset]["1x"]["peak_main_mb"]
    results = {"date": time.strftime("%Y-%m-%d"), "runs": runs,
               "sizes": {k: {"sets": n, "rows": release_rows(releases[k])} for k, n in sizes.items()},
               "settings": " ".join(["--preset PRESET", *shared_flags(args.steps)])}
    (HERE / "results" / "train_memory.json").write_text(json.dumps(results, indent=2))
    write_section("train-memory", section(results))
    print(section(results))
    missed = [p for p, r in runs.items() if r["ratio_tree"] > 1.10]
    if missed:
        raise SystemExit(f"peak memory grew more than 10% with the release for: {', '.join(missed)}")


if __name__ == "__main__":
    main()
