"""Learning check of the `tiny` preset on this CPU: scorer frame AUC and clip-caption BLEU-4 after at most
15 minutes of training, beside the untrained model's, and the ATS / uniform / Top-K ablation.

    .venv/bin/python benchmarks/bench_trainer.py --work /tmp/hivau-learning-check

The data are the demo generator's (12 sets of 8 scenes, rendered and built here); the release's held-out
videos are the test split. Results go to BENCHMARKS.md (section `trainer`) and WORK/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

BIN = Path(sys.executable).parent


def sh(*cmd: str, env: dict | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, **(env or {})})


def make_release(work: Path, sets: int) -> Path:
    release = work / "ws" / "releases" / "v0001"
    if release.is_dir():
        return release
    sh(str(BIN / "hivau"), "demo-data", str(work / "demo"), "--no-faults", "--sets", str(sets))
    sh(str(BIN / "hivau"), "build", "--videos", str(work / "demo" / "videos"), "--annotations",
       str(work / "demo" / "annotations.json"), "--workspace", str(work / "ws"), "--rollup", "extractive",
       env={"PREFECT_SERVER_EPHEMERAL_ENABLED": "true"})
    sh(str(BIN / "hivau"), "release", "--workspace", str(work / "ws"), "--include-unreviewed", "--no-publish")
    return release


def train(release: Path, out: Path, *extra: str) -> float:
    started = time.time()
    if not (out / "model" / "config.json").is_file():
        sh(str(BIN / "hivau-train"), "--release", str(release), "--preset", "tiny", "--out", str(out), *extra)
    return round(time.time() - started, 1)


def evaluate(model: Path, release: Path) -> dict:
    if not (model / "metrics.json").is_file():
        sh(str(BIN / "hivau-eval"), "--model", str(model), "--release", str(release))
    return json.loads((model / "metrics.json").read_text())


def section(results: dict) -> str:
    t, u = results["trained"], results["untrained"]
    clip_t, clip_u = t["text"]["clip:caption"], u["text"]["clip:caption"]
    lines = [
        "## Trainer learning check (`benchmarks/bench_trainer.py`, tiny preset, this 2-core CPU)", "",
        f"Data: the demo generator, {results['sets']} sets ({results['rows']['train']} train rows, "
        f"{results['rows']['test']} test rows; {t['scorer']['videos']} held-out test videos, "
        f"{t['scorer']['frames']} frames). Training took {results['train_seconds']} s in all (scorer stage, frame "
        f"sampling and {results['steps']} optimiser steps), under the 15-minute bar.", "",
        "| figure | untrained | trained | bar |", "|---|---|---|---|",
        f"| scorer frame ROC AUC (test videos) | {u['scorer']['auc']:.3f} | {t['scorer']['auc']:.3f} | >= 0.90 |",
        f"| clip caption BLEU-4 | {clip_u['BLEU-4']:.3f} | {clip_t['BLEU-4']:.3f} | >= 0.25 |",
        f"| clip caption METEOR | {clip_u['METEOR'] or 0:.3f} | {clip_t['METEOR'] or 0:.3f} | |",
        f"| clip caption CIDEr | {clip_u['CIDEr']:.3f} | {clip_t['CIDEr']:.3f} | |",
    ]
    for level in ("event", "video"):
        lines.append(f"| {level} BLEU-4 (all tasks) | {u['text'][level]['BLEU-4']:.3f} | {t['text'][level]['BLEU-4']:.3f} | |")
    lines += ["", "Sampler ablation of the trained model (event and video items, the same N frames):", "",
              "| sampler | event BLEU-4 | event CIDEr | video BLEU-4 | video CIDEr |", "|---|---|---|---|---|"]
    for name, levels in t["ablation"].items():
        lines.append(f"| {name} | {levels['event']['BLEU-4']:.4f} | {levels['event']['CIDEr']:.4f} | "
                     f"{levels['video']['BLEU-4']:.4f} | {levels['video']['CIDEr']:.4f} |")
    lines += ["", "Read with care: the demo's texts come from templates (clip captions from the actor tracks, summaries "
              "and QA from the offline extractive roll-up), so high n-gram scores mostly say the model learned the "
              "templates and which actors, colours and directions fill them; they are not comparable with "
              "Holmes-VAU's figures on HIVAU-70k. The ablation differences are a few BLEU points on 21 held-out "
              "videos, within what a different seed moves.", "",
              f"Command: `{results['command']}` (untrained: the same preset with `--max-steps 0 --scorer-epochs 0`). "
              "A GPU step timing is `benchmarks/bench_train_step.py` (no GPU was lent to the session that ran this)."]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--report":  # re-render the section from a results.json
        write_section("trainer", section(json.loads(Path(sys.argv[2]).read_text())))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/hivau-learning-check"))
    parser.add_argument("--sets", type=int, default=12)
    parser.add_argument("--epochs", type=float, default=12)
    parser.add_argument("--minutes", type=float, default=14.5, help="wall-time cap of the whole training run")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    release = make_release(args.work, args.sets)
    train(release, args.work / "untrained", "--max-steps", "0", "--scorer-epochs", "0")
    flags = ["--epochs", str(args.epochs), "--batch-size", "16", "--lr", "1e-3", "--max-minutes", str(args.minutes),
             "--log-every", "50", "--save-every", "100000"]
    seconds = train(release, args.work / "trained", *flags)
    import pandas as pd

    results = {"sets": args.sets, "train_seconds": seconds,
               "rows": {s: len(pd.read_parquet(release / "data" / f"{s}.parquet")) for s in ("train", "test")},
               "untrained": evaluate(args.work / "untrained" / "model", release),
               "trained": evaluate(args.work / "trained" / "model", release),
               "command": "hivau-train --preset tiny " + " ".join(flags)}
    config = json.loads((args.work / "trained" / "model" / "config.json").read_text())
    results["steps"] = config["summary"]["steps"]
    results["train_seconds"] = config["summary"]["seconds"]
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    write_section("trainer", section(results))
    print(section(results))


if __name__ == "__main__":
    main()
