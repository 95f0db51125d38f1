"""Learning check of the verifiable tasks' policy on the demo release, on this CPU: the vlm preset's checkpoint (a
tiny random Qwen2-VL built here) untrained, after `--stage vau-sft` (reasoning chains in <think>, then the answer)
and after `--stage vau-grpo` from those adapters (TRL's GRPOTrainer, hivau's rewards), scored on the release's
held-out test tasks: format, multiple-choice accuracy, grounding mIoU, classification and yes/no accuracy.

    .venv/bin/python benchmarks/bench_vau_policy.py --work /tmp/hivau-vau-policy [--sets 12] [--answers-only]

The release is the demo generator's, built as `bench_trainer.py` builds it (same folder layout, so a --work shared
with it is reused). Results go to BENCHMARKS.md (section `vau-policy`, or `vau-policy-answers` for SFT on the
answers alone) and WORK/results-vau-policy[-answers].json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_trainer import BIN, make_release, sh  # noqa: E402
from report import write_section  # noqa: E402

# a random base learns through adapters on every layer of its LM and its output head
LORA = {"lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "modules_to_save": ["lm_head"], "lora_r": 32, "lora_alpha": 64}
FIGURES = (("answers well formed (<think>..</think><answer>..</answer>)", lambda m: m["format"]["well_formed"]),
           ("multiple-choice accuracy", lambda m: m.get("choice", {}).get("accuracy")),
           ("grounding mIoU (anomalous videos)", lambda m: m.get("grounding", {}).get("anomalous", {}).get("mIoU")),
           ("grounding: normal videos answered [-1, -1]",
            lambda m: m.get("grounding", {}).get("normal", {}).get("no_span")),
           ("classification accuracy", lambda m: m.get("classify", {}).get("accuracy")),
           ("anomaly yes/no accuracy", lambda m: m.get("detect", {}).get("accuracy")))


def tiny_policy(work: Path, release: Path) -> Path:
    """A random Qwen2-VL (2 layers, 128 wide) whose tokenizer is trained on the release's SFT rows (tags included)."""
    from tiny_video_vlms import build_tiny_qwen2_vl

    folder = work / "tiny-qwen2-vl-vau"
    if not (folder / "config.json").is_file():
        texts = (release / "sft" / "swift" / "train.jsonl").read_text().splitlines()
        build_tiny_qwen2_vl(folder, texts=texts, hidden=128)
    return folder


def stage(name: str, release: Path, out: Path, options: dict, *flags: str) -> dict:
    if not (out / "summary.json").is_file():
        sh(str(BIN / "hivau-train"), "--stage", name, "--release", str(release), "--preset", "vlm", "--out", str(out),
           "--preset-options", json.dumps(options), *flags)
    return json.loads((out / "summary.json").read_text())


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def section(results: dict) -> str:
    sft, grpo = results["sft"], results["grpo"]
    untrained, counts = sft["test_before"], sft["test_before"]["counts"]
    total = sum(results["test_tasks_in_release"].values())
    lines = [
        "## Verifiable tasks' policy: learning check (`benchmarks/bench_vau_policy.py"
        + (" --answers-only`: answers without <think>" if results.get("answers_only") else "`: chains in <think>")
        + ", this 2-core CPU)", "",
        f"Model: {results['model']}. Data: the demo generator, {results['sets']} sets; {sft['train_tasks']} train "
        f"tasks; scored on the first {results['eval_per_task']} held-out test tasks of each kind "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())}; the test split has {total}). "
        f"SFT: {results['sft_steps']} steps in {sft['seconds']} s; GRPO: {results['grpo_steps']} steps in "
        f"{grpo['seconds']} s (SFT's time includes scoring the untrained and the tuned policy, GRPO's its own "
        "scoring; GRPO starts where SFT was scored).", "",
        "| figure (test split) | untrained | after SFT | after GRPO | bar |", "|---|---|---|---|---|"]
    for label, value in FIGURES:
        bar = ""
        if label.startswith(("multiple", "grounding mIoU")):  # the bar: both stages above the untrained
            start = value(untrained) or 0.0
            met = all((value(m) or 0.0) > start for m in (sft["test_after"], grpo["test_after"]))
            bar = "> untrained: " + ("met" if met else "**missed**")
        lines.append(f"| {label} | {fmt(value(untrained))} | {fmt(value(sft['test_after']))} | "
                     f"{fmt(value(grpo['test_after']))} | {bar} |")
    rewards = [r["reward"] for r in grpo["log"] if "reward" in r]
    k = max(1, len(rewards) // 4)
    lines += ["", f"GRPO's mean reward per completion (format + accuracy + IoU) was {sum(rewards[:k]) / k:.3f} over "
                  f"its first {k} steps and {sum(rewards[-k:]) / k:.3f} over its last {k}.", "",
              "Read with care: a 2-layer model of random weights, on the demo's template texts and a few dozen test "
              "tasks; it shows that each stage learns what it is given (the tags, then the answers), not what a "
              "pretrained Qwen2.5-VL would reach. The bar is the issue's: after SFT and after GRPO, above the "
              "untrained model on multiple-choice accuracy and grounding mIoU.", "",
              f"Commands: `{results['commands'][0]}`, then `{results['commands'][1]}`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/hivau-vau-policy"))
    parser.add_argument("--sets", type=int, default=12)
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--grpo-steps", type=int, default=40)
    parser.add_argument("--sft-lr", type=float, default=2e-3)
    parser.add_argument("--grpo-lr", type=float, default=2e-4)
    parser.add_argument("--n-frames", type=int, default=4)
    parser.add_argument("--eval-per-task", type=int, default=24, help="test tasks scored per kind")
    parser.add_argument("--answers-only", action="store_true", help="SFT on the answers alone, prompts without "
                                                                     "<think> (section vau-policy-answers)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    release = make_release(args.work, args.sets)
    suffix = "-answers" if args.answers_only else ""
    options = {"model_path": str(tiny_policy(args.work, release)), "n_frames": args.n_frames, "short_side": 64,
               "max_new_tokens": 64 if args.answers_only else 512, "eval_per_task": args.eval_per_task,
               "think": not args.answers_only, **LORA}
    sft_flags = ["--max-steps", str(args.sft_steps), "--batch-size", "4", "--lr", str(args.sft_lr)]
    grpo_flags = ["--init", str(args.work / f"vau-sft{suffix}" / "adapters"), "--max-steps", str(args.grpo_steps),
                  "--batch-size", "4", "--num-generations", "4", "--max-completion-length",
                  str(options["max_new_tokens"]), "--lr", str(args.grpo_lr)]
    sft = stage("vau-sft", release, args.work / f"vau-sft{suffix}", options, *sft_flags)
    grpo = stage("vau-grpo", release, args.work / f"vau-grpo{suffix}", {**options, "score_before": False}, *grpo_flags)
    shown = {k: v for k, v in options.items() if k != "model_path"}
    from collections import Counter

    from hivau.schemas.records import read_vau_rows

    results = {"sets": args.sets, "sft_steps": args.sft_steps, "grpo_steps": args.grpo_steps, "sft": sft, "grpo": grpo,
               "eval_per_task": args.eval_per_task,
               "test_tasks_in_release": dict(Counter(t.task for t in read_vau_rows(release, "test"))),
               "model": "a random Qwen2-VL built by `tests/tiny_video_vlms.py` (2-block ViT, 2-layer LM, 128 wide, "
                        f"byte-level BPE tokenizer trained on the release's SFT rows), {args.n_frames} frames of 64 px "
                        "as images, LoRA r 32 on every linear layer of the LM and its output head trained whole",
               "commands": [f"hivau-train --stage vau-sft --preset vlm --preset-options '{json.dumps(shown)}' "
                            + " ".join(sft_flags),
                            f"hivau-train --stage vau-grpo --preset vlm --preset-options '{json.dumps(shown)}' "
                            + " ".join(grpo_flags).replace(str(args.work), "WORK")]}
    results["answers_only"] = args.answers_only
    (args.work / f"results-vau-policy{suffix}.json").write_text(json.dumps(results, indent=2))
    write_section(f"vau-policy{suffix}", section(results))
    print(section(results))


if __name__ == "__main__":
    main()
