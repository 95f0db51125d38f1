"""Sampler comparison: hivau's `ats` against `ats_holmes` (Holmes-VAU's released sampler) and uniform.

500 seeded synthetic score curves, each a smooth low background with one anomalous bump (a raised-cosine plateau
over 5-30% of the video), T between 64 and 1024 candidate frames, N = 16. For each sampler: how often `ats` and
`ats_holmes` pick the identical 16 frames, the mean share of picked frames inside the anomaly, the mean number of
distinct frames, and how often the video's last frame is picked. Pure numpy; a second or two on a CPU.

    .venv/bin/python benchmarks/bench_ats_holmes.py            # prints the markdown table
    .venv/bin/python benchmarks/bench_ats_holmes.py --write    # also writes its BENCHMARKS.md section
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hivau.models.sampler import sample_indices

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

SAMPLERS = ("ats", "ats_holmes", "uniform")


def smooth_noise(rng: np.random.Generator, total: int, scale: float) -> np.ndarray:
    """Low-frequency noise: white noise averaged over a window of about 1/20 of the video."""
    width = max(3, total // 20)
    return np.convolve(rng.standard_normal(total + width), np.ones(width) / width, "valid")[:total] * scale


def curve(rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """One score curve in [0, 1] and its anomaly span [start, end) in frames."""
    total = int(rng.integers(64, 1025))
    length = max(2, int(total * rng.uniform(0.05, 0.30)))
    start = int(rng.integers(0, total - length + 1))
    t = np.arange(total)
    # a plateau with cosine shoulders a fifth of the span wide, so the scores rise and fall smoothly
    ramp = max(1.0, length / 5)
    rise = np.clip((t - start + ramp / 2) / ramp, 0, 1)
    fall = np.clip((start + length - t + ramp / 2) / ramp, 0, 1)
    shape = 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))
    background, peak = rng.uniform(0.02, 0.2), rng.uniform(0.5, 0.95)
    scores = background + (peak - background) * shape + smooth_noise(rng, total, 0.15)
    return np.clip(scores, 0.0, 1.0), start, start + length


def compare(count: int = 500, n: int = 16, seed: int = 0) -> dict:
    """Per sampler: mean share inside the anomaly, mean distinct frames, share picking the last frame; plus
    how often ats and ats_holmes agree exactly."""
    rng = np.random.default_rng(seed)
    inside = {s: [] for s in SAMPLERS}
    distinct = {s: [] for s in SAMPLERS}
    last = {s: [] for s in SAMPLERS}
    identical = 0
    spans = []
    for _ in range(count):
        scores, start, end = curve(rng)
        picked = {s: np.asarray(sample_indices(s, scores, n)) for s in SAMPLERS}
        identical += picked["ats"].tolist() == picked["ats_holmes"].tolist()
        spans.append((end - start) / len(scores))
        for s, idx in picked.items():
            inside[s].append(float(np.mean((idx >= start) & (idx < end))))
            distinct[s].append(len(set(idx.tolist())))
            last[s].append(bool(idx[-1] == len(scores) - 1))
    return {"count": count, "n": n, "identical": identical, "anomaly_share": float(np.mean(spans)),
            "rows": {s: (float(np.mean(inside[s])), float(np.mean(distinct[s])), float(np.mean(last[s])))
                     for s in SAMPLERS}}


def table(result: dict) -> str:
    """The comparison as markdown."""
    lines = [f"{result['count']} curves, N = {result['n']}: `ats` and `ats_holmes` picked the identical "
             f"{result['n']} frames on {result['identical']} of {result['count']}. The anomaly covers "
             f"{result['anomaly_share']:.3f} of the frames on average.", "",
             "| sampler | share of picked frames inside the anomaly | distinct frames (mean) | picks the last frame |",
             "|---|---|---|---|"]
    lines += [f"| {s} | {share:.3f} | {dist:.3f} | {lastf:.1%} |" for s, (share, dist, lastf) in result["rows"].items()]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="also write the ats_holmes section of BENCHMARKS.md")
    args = parser.parse_args(argv)
    text = table(compare(args.count, 16, args.seed))
    print(text)
    if args.write:
        write_section("ats_holmes", "## Holmes-VAU's released sampler against hivau's ATS "
                                    "(`benchmarks/bench_ats_holmes.py`)\n\n" + text)


if __name__ == "__main__":
    main()
