"""Cutter benchmark: hivau's ffmpeg cutter (accurate / copy) against HolmesVAU's split_video.py method.

The baseline, reimplemented here from its description: decode the whole segment with decord into memory,
then write it with OpenCV's `mp4v` writer. Each cut runs in its own process; peak memory is the largest
resident set of that process tree (sampled every 10 ms), time is wall-clock. Same source, same segments.

    .venv/bin/python benchmarks/bench_cut.py [--quick]      # writes BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"

BASELINE = """
import sys, cv2, decord
src, dst, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
vr = decord.VideoReader(src, ctx=decord.cpu(0))
fps = vr.get_avg_fps()
frames = vr.get_batch(list(range(int(start * fps), int(end * fps)))).asnumpy()  # whole segment in memory
h, w = frames.shape[1:3]
writer = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
for frame in frames:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
writer.release()
"""

# The pipeline probes each source once (its manifest keeps fps and keyframes), then cuts many segments.
OURS = """
import json, sys
from hivau.tasks.build.cut import cut_segment
src, dst, start, end, mode, probe = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
info = json.load(open(probe))
cut_segment(src, dst, start, end, mode, info["fps"], info["keyframe_times"])
"""


def make_source(seconds: int) -> Path:
    """A 720p, 30 fps H.264 source with a keyframe every 250 frames (x264's default)."""
    path = WORK / f"src_720p_{seconds}s.mp4"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=1280x720:rate=30:duration={seconds}", "-c:v", "libx264", "-preset",
                        "ultrafast", "-g", "250", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def measure(code: str, args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak MB of the process tree) for one cut in a fresh interpreter."""
    start = time.perf_counter()
    proc = psutil.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc] + proc.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.read().decode()[-2000:])
    return elapsed, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a short source and small segments (smoke run)")
    opts = parser.parse_args()
    source_s, lengths, long_len = (120, [5, 10], 100) if opts.quick else (660, [10, 20, 40], 600)
    src = make_source(source_s)
    out = WORK / "out"
    out.mkdir(parents=True, exist_ok=True)
    from hivau.tasks.build.probe import probe_video

    probe = out / "probe.json"
    probe.write_text(probe_video(src, "bench", check_decode=False).model_dump_json())
    rows = []
    for length in lengths + [long_len]:
        start = 13.3  # not on a keyframe, so copy mode has to snap
        result = {"length_s": length}
        for mode in ("accurate", "copy"):
            result[mode] = measure(OURS, [str(src), str(out / f"{mode}_{length}.mp4"), str(start), str(start + length), mode, str(probe)])
        if length != long_len:  # the baseline would need ~length * 2.6 GB/min of RAM at 720p
            result["baseline"] = measure(BASELINE, [str(src), str(out / f"base_{length}.mp4"), str(start), str(start + length)])
        rows.append(result)
        print(json.dumps(result), flush=True)
    write_report(rows, source_s, opts.quick)


def write_report(rows: list[dict], source_s: int, quick: bool) -> None:
    cpu = psutil.cpu_count()
    lines = [
        "## Cutting events and clips (`benchmarks/bench_cut.py`)", "",
        f"Source: {source_s} s of 1280x720 H.264 at 30 fps (testsrc2, keyframe every 250 frames); segments start at "
        f"13.3 s (off-keyframe). Machine: {cpu} cores. Each cut runs alone in a fresh process; peak memory is the "
        "whole process tree's resident set. Baseline: HolmesVAU's `split_video.py` method (decord decodes the "
        "whole segment into memory, OpenCV `mp4v` writes it), reimplemented from its description. Both sides "
        "include opening the source in their process; the source's probe (fps, keyframes) is read from the "
        "manifest, as the pipeline does. Accurate mode uses the default x264 preset `superfast`, CRF 20."
        + (" **Quick smoke run, not the reference figures.**" if quick else ""), "",
        "| segment | baseline time | accurate time | copy time | accurate speed-up | copy speed-up | baseline peak MB | accurate peak MB | copy peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc_t, acc_m = r["accurate"]
        cp_t, cp_m = r["copy"]
        if "baseline" in r:
            b_t, b_m = r["baseline"]
            lines.append(f"| {r['length_s']} s | {b_t:.2f} s | {acc_t:.2f} s | {cp_t:.2f} s | {b_t / acc_t:.1f}x | "
                         f"{b_t / cp_t:.1f}x | {b_m:.0f} | {acc_m:.0f} | {cp_m:.0f} |")
        else:
            lines.append(f"| {r['length_s']} s | not run (memory) | {acc_t:.2f} s | {cp_t:.2f} s | – | – | – | "
                         f"{acc_m:.0f} | {cp_m:.0f} |")
    base = [r for r in rows if "baseline" in r]
    per_s = [(r["baseline"][1] / r["length_s"]) for r in base]
    lines += ["", f"Baseline memory grows with the segment: about {sum(per_s) / len(per_s):.0f} MB per second of "
              f"720p video, so the {rows[-1]['length_s']} s segment would need about "
              f"{rows[-1]['length_s'] * per_s[-1] / 1024:.0f} GB; hivau's cutter streams with ffmpeg and stays flat.", ""]
    write_section("cut", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
