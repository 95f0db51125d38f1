"""build-hivau at scale: synthetic batches of N 30 s videos against a plain loop of the same ffmpeg cuts.

    .venv/bin/python benchmarks/bench_scale.py --sizes 250 1000 4000 --workers 2

Each video has 2 events x 3 clips with complete text (captions, summaries, splits). Copy mode. For each size,
in the same run: the plain loop (the same ffmpeg stream-copy commands the cutter builds, `--workers` at a
time) and `hivau build` in a fresh process (`--workers` threads, its own temporary Prefect server), whose
probe+plan+cut stage time the flow reports. Peak memory is the RSS of the whole process tree, sampled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402

EVENTS = [(2.0, 8.0), (15.0, 24.0)]
RESULTS = Path(__file__).parent / "results" / "scale.json"


def make_batch(root: Path, n: int) -> tuple[Path, Path]:
    """n hard links of one 30 s master (n distinct files to the engine) and their HIVAU raw annotations."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    master = root / "master.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=160x120:rate=30:duration=30", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "30", "-pix_fmt", "yuv420p", str(master)], check=True)
    entries = {}
    for i in range(n):
        vid = f"v{i:05d}"
        os.link(master, videos / f"{vid}.mp4")
        clips = [[[s + k * (e - s) / 3, s + (k + 1) * (e - s) / 3] for k in range(3)] for s, e in EVENTS]
        entries[vid] = {
            "n_frames": 900, "fps": 30.0, "label": ["Fighting"], "events": [list(e) for e in EVENTS], "clips": clips,
            "clips_caption": [[f"a man in a red shirt pushes another man near the door ({k})" for k in range(3)]
                              for _ in EVENTS],
            "events_summary": ["Two men fight near the door." for _ in EVENTS],
            "events_summary_split": [{"judgement": "An anomaly exists: fighting.", "description": "Two men fight.",
                                      "analysis": "Violence between people."} for _ in EVENTS],
            "video_summary": "Two men fight twice near a door.",
            "video_summary_split": {"judgement": "An anomaly exists: fighting.", "description": "Two men fight.",
                                    "analysis": "Violence between people."}}
    annotations = root / "annotations.json"
    annotations.write_text(json.dumps(entries))
    return videos, annotations


def plain_loop(videos: Path, annotations: Path, out: Path, workers: int) -> float:
    """The same stream-copy cuts, `workers` at a time, with nothing else: the floor for the cut stage."""
    from hivau.tasks.build.cut import CutSettings, build_command, copy_start
    from hivau.tasks.build.probe import read_packets

    _, keyframes = read_packets(str(next(videos.iterdir())))
    out.mkdir(parents=True)
    commands = []
    for vid, entry in json.loads(annotations.read_text()).items():
        spans = [tuple(e) for e in entry["events"]] + [tuple(c) for per in entry["clips"] for c in per]
        for j, (s, e) in enumerate(spans):
            commands.append(build_command(str(videos / f"{vid}.mp4"), str(out / f"{vid}_{j}.mp4"),
                                          copy_start(s, keyframes), e, "copy", CutSettings()))
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda cmd: subprocess.run(cmd, capture_output=True, check=True), commands))
    return time.perf_counter() - started


def quarter_means(seconds: list[float]) -> dict:
    """Mean shard time of the first and last quarter of shards to finish: does the run slow down as it grows?"""
    q = max(len(seconds) // 4, 1)
    mean = lambda xs: round(sum(xs) / len(xs), 2) if xs else None  # noqa: E731
    return {"shards": len(seconds), "first_quarter": mean(seconds[:q]), "last_quarter": mean(seconds[-q:])}


def tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except psutil.Error:
        return 0


def run_build(videos: Path, annotations: Path, ws: Path, workers: int, shard_size: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    cmd = [str(Path(sys.executable).parent / "hivau"), "build", "--videos", str(videos), "--annotations",
           str(annotations), "--workspace", str(ws), "--cut-mode", "copy", "--workers", str(workers),
           "--shard-size", str(shard_size), "--rollup", "extractive"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(1.0)  # sampling costs CPU the build would use: once a second is enough for a peak

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    sampler.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"hivau build failed:\n{output[-4000:]}")
    summary = json.loads((ws / "manifests" / "summary.json").read_text())
    (batch,) = [json.loads(p.read_text()) for p in (ws / "state" / "batches").glob("*.json")]
    return {"wall_s": wall, "peak_rss_mb": peak[0] / 2**20, "summary": summary, "work": batch["last_build"]}


def store_row(row: dict) -> dict:
    """Add one size's row to the stored results (rows of other sizes and earlier runs are kept: a 4,000-video
    run can be taken on its own, and a run stopped part-way keeps the sizes it finished)."""
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() and RESULTS.read_text() else {}
    stored[str(row["videos"])] = row
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(stored, indent=1))
    return stored


def write_report(stored: dict, workers: int, shard_size: int) -> None:
    rows = [stored[k] for k in sorted(stored, key=int)]
    first = rows[0]
    lines = ["## Scale: build-hivau on synthetic batches (`benchmarks/bench_scale.py`)", "",
             f"30 s videos, 2 events x 3 clips each, copy mode, {workers} workers for both paths, shard size "
             f"{shard_size}, on this machine ({os.cpu_count()} cores). `loop` is the same ffmpeg cut commands "
             "run by a plain thread pool; `probe+cut` is build-hivau's probe, plan and cut stage as the flow times it. "
             "Peak memory: RSS of the whole `hivau build` process tree (flow, its temporary Prefect server). "
             "`vs first size` compares ms/video with the smallest size; `loop-normalised` divides both by their "
             "own run's loop ms/video (this machine's speed drifts by up to 25% between runs an hour apart).", "",
             "| videos | segments | loop s | probe+cut s | ratio | ms/video | vs first size | loop-normalised "
             "| whole build s | peak RSS MB | shard s, first / last quarter |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = r.get("cut_shard_s") or {}
        lines.append(f"| {r['videos']} | {r['segments']} | {r['loop_s']} | {r['probe_cut_s']} | {r['ratio']}x | "
                     f"{r['ms_per_video']} | {r['ms_per_video'] / first['ms_per_video']:.2f}x | "
                     f"{r['ratio'] / first['ratio']:.2f}x | {r['build_s']} | {r['peak_rss_mb']} | "
                     f"{q.get('first_quarter', '-')} / {q.get('last_quarter', '-')} |")
    lines += ["", "Stage seconds of the largest run: " + json.dumps(rows[-1]["stages"]),
              "Raw figures: `benchmarks/results/scale.json`."]
    write_section("scale", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=25)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--report-only", action="store_true", help="rewrite the BENCHMARKS.md table from the results")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads(RESULTS.read_text()), args.workers, args.shard_size)
        return
    root = args.work or Path(tempfile.mkdtemp(prefix="hivau-scale-"))
    for n in args.sizes:
        base = root / f"n{n}"
        shutil.rmtree(base, ignore_errors=True)
        videos, annotations = make_batch(base, n)
        loop_s = plain_loop(videos, annotations, base / "loop", args.workers)
        shutil.rmtree(base / "loop", ignore_errors=True)
        built = run_build(videos, annotations, base / "ws", args.workers, args.shard_size)
        stages = built["work"].get("seconds_by_stage") or {}
        cut_s = stages.get("probe_plan_cut", float("nan"))
        row = {"videos": n, "segments": n * 8, "loop_s": round(loop_s, 1), "probe_cut_s": round(cut_s, 1),
               "ratio": round(cut_s / loop_s, 2), "ms_per_video": round(1000 * cut_s / n, 1),
               "build_s": round(built["wall_s"], 1), "peak_rss_mb": round(built["peak_rss_mb"]),
               "processed": built["summary"]["videos_processed"], "stages": stages,
               "cut_shard_s": quarter_means(built["work"].get("shard_seconds", {}).get("cut", []))}
        print(json.dumps(row), flush=True)
        write_report(store_row(row), args.workers, args.shard_size)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
