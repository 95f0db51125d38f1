"""Roll-up throughput against the OpenAI-compatible test server, and the tiny captioner batched vs one by one.

Roll-up: the test server runs in its own process with a fixed latency per request (200 ms); hivau's
`run_rollup` drafts event + video summaries and 5W2H pairs for N one-event videos (4 requests each) at
concurrency C, then runs again on the same cache. Baseline, side by side: the same client at concurrency 1.
Captioner: the tiny random LLaVA of the tests on CPU, clips of 8 frames, batch of 8 clips vs 1 clip a pass.

    .venv/bin/python benchmarks/bench_rollup.py [--quick]     # writes its section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from report import write_section  # noqa: E402
from rollup_items import cut_item  # noqa: E402


def served(base_url: str) -> int:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats") as resp:
        return json.loads(resp.read())["completions"]


def time_rollup(base_url: str, items, concurrency: int, cache: Path) -> tuple[float, int, object]:
    from hivau.tasks.text.llm import LLMSettings
    from hivau.tasks.text.rollup import RollupSettings, run_rollup

    settings = RollupSettings(backend="openai", llm=LLMSettings(base_url=base_url, model="bench", concurrency=concurrency))
    before = served(base_url)
    t0 = time.perf_counter()
    run = run_rollup(items, cache, settings)
    elapsed = time.perf_counter() - t0
    failed = sum(1 for it in run.items for q in it.quarantine)
    assert failed == 0, f"{failed} failures in the benchmark run"
    return elapsed, served(base_url) - before, run.usage


def bench_rollup(n_items: int, n_baseline: int, concurrency: int, latency: float) -> dict:
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "openai_server.py"), "--latency", str(latency)],
                              stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        items = [cut_item(f"b{i}", n_events=1, offset_s=i * 0.1) for i in range(n_items)]
        with tempfile.TemporaryDirectory() as tmp:
            cold_s, cold_requests, usage = time_rollup(base_url, items, concurrency, Path(tmp) / "cache")
            warm_s, warm_requests, warm_usage = time_rollup(base_url, items, concurrency, Path(tmp) / "cache")
            base_items = [cut_item(f"s{i}", n_events=1, offset_s=1000 + i * 0.1) for i in range(n_baseline)]
            base_s, base_requests, _ = time_rollup(base_url, base_items, 1, Path(tmp) / "cache-baseline")
    finally:
        server.terminate()
    return {"items": n_items, "concurrency": concurrency, "latency_s": latency,
            "cold_s": cold_s, "cold_requests": cold_requests, "cold_rps": cold_requests / cold_s,
            "warm_s": warm_s, "warm_requests": warm_requests, "warm_cache_hits": warm_usage.cache_hits,
            "baseline_items": n_baseline, "baseline_s": base_s, "baseline_requests": base_requests,
            "baseline_rps": base_requests / base_s, "target_rps": 0.8 * concurrency / latency}


def captioner_fps(model: str, clips, batch_size: int) -> float:
    from hivau.tasks.text.caption import CaptionSettings, TransformersCaptioner

    captioner = TransformersCaptioner(model, CaptionSettings(model=model, batch_size=batch_size, max_new_tokens=16))
    captioner.caption(clips[:batch_size])  # warm-up: first-call allocations are not the steady state
    t0 = time.perf_counter()
    captioner.caption(clips)
    return sum(len(c.frames) for c in clips) / (time.perf_counter() - t0)


def bench_captioner_batching(n_clips: int, frames: int, batch: int) -> dict:
    import torch
    from tiny_vlm import build_tiny_llava

    from hivau.tasks.text.caption import ClipFrames

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    clips = [ClipFrames(f"c{i}", 0.0, 2.0, rng.integers(0, 255, (frames, 224, 224, 3), dtype=np.uint8), [0.0] * frames)
             for i in range(n_clips)]
    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_tiny_llava(Path(tmp) / "tiny"))
        single = captioner_fps(model, clips, 1)
        batched = captioner_fps(model, clips, batch)
    return {"clips": n_clips, "frames_per_clip": frames, "batch": batch, "single_fps": single, "batched_fps": batched}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    opts = parser.parse_args()
    n_items, n_base, n_clips = (40, 5, 8) if opts.quick else (500, 25, 64)
    r = bench_rollup(n_items, n_base, concurrency=16, latency=0.2)
    print(json.dumps(r), flush=True)
    c = bench_captioner_batching(n_clips, frames=8, batch=8)
    print(json.dumps(c), flush=True)
    lines = [
        "## Roll-up throughput and captioner batching (`benchmarks/bench_rollup.py`)", "",
        f"Roll-up: {r['items']} one-event videos, 4 requests each (event summary, event 5W2H, video summary, video "
        f"5W2H; the video's wait for its event's), through the real `openai` client to the test server "
        f"(`tests/openai_server.py`, own process, {r['latency_s'] * 1000:.0f} ms per request). Baseline, side by side: "
        f"the same code at concurrency 1 on {r['baseline_items']} videos."
        + (" **Quick smoke run, not the reference figures.**" if opts.quick else ""), "",
        "| run | concurrency | requests sent | time | requests/s | vs baseline |",
        "|---|---|---|---|---|---|",
        f"| baseline | 1 | {r['baseline_requests']} | {r['baseline_s']:.1f} s | {r['baseline_rps']:.2f} | 1.0x |",
        f"| hivau, cold cache | {r['concurrency']} | {r['cold_requests']} | {r['cold_s']:.1f} s | {r['cold_rps']:.1f} | "
        f"{r['cold_rps'] / r['baseline_rps']:.1f}x |",
        f"| hivau, same run again | {r['concurrency']} | {r['warm_requests']} | {r['warm_s']:.2f} s | – "
        f"({r['warm_cache_hits']} answers from the cache) | – |", "",
        f"Target: at least 0.8 x C / latency = {r['target_rps']:.0f} requests/s at C = {r['concurrency']}: "
        f"{'met' if r['cold_rps'] >= r['target_rps'] else 'NOT met'} ({r['cold_rps']:.1f}); second run: "
        f"{r['warm_requests']} requests.", "",
        f"Captioner: the tests' tiny random LLaVA (2-layer CLIP tower, 2-layer 64-dim Llama) on CPU, "
        f"{c['clips']} clips of {c['frames_per_clip']} frames at 224x224, 16 new tokens each, torch on 2 threads.", "",
        "| mode | frames/s | vs one by one |", "|---|---|---|",
        f"| one clip per pass | {c['single_fps']:.1f} | 1.0x |",
        f"| {c['batch']} clips per pass | {c['batched_fps']:.1f} | {c['batched_fps'] / c['single_fps']:.2f}x |",
    ]
    write_section("rollup", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
