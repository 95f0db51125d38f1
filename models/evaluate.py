"""`hivau-eval`: answers on a release's test split scored as Holmes-VAU reports them, plus the scorer's
frame AUC and the sampler ablation (ATS, Holmes-VAU's released ATS, uniform, Top-K at the same N).

    hivau-eval --model runs/tiny/model --release .state/workspace/releases/v0001
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hivau.models.config import TrainConfig
from hivau.models.data import FrameStore, ItemFrames, video_labels
from hivau.models.holmes_protocol import holmes_protocol
from hivau.models.holmes_protocol import main as score_predictions
from hivau.models.io import load_model, read_config
from hivau.models.metrics import TEXT_METRICS, CaptionScorer, fmt, metrics_rows
from hivau.schemas.records import read_release_rows

SAMPLERS = ("ats", "ats_holmes", "uniform", "topk")  # ats_holmes: Holmes-VAU's released sampler


def generate_answers(model, store, rows, plan: dict, batch_size: int, max_new_tokens: int,
                     workers: int = 0) -> dict[str, str]:
    """Greedy answers for rows, their frames decoded batch by batch (in DataLoader workers when asked)."""
    import functools

    import torch

    from hivau.models.inference import quiet_worker, to_device

    items = ItemFrames(rows, plan, store, model.cfg.n_frames, {})
    loader = torch.utils.data.DataLoader(items, batch_size=batch_size, num_workers=workers,
                                         collate_fn=functools.partial(model.collator(), train=False),
                                         worker_init_fn=quiet_worker if workers else None)
    device = next(model.parameters()).device
    said = []
    for inputs in loader:
        inputs.pop("over_length")
        said += model.generate(**to_device(inputs, device), max_new_tokens=max_new_tokens)
    return {r.id: a for r, a in zip(rows, said)}


def score_rows(rows, answers: dict[str, str], scorer: CaptionScorer) -> dict:
    """Metrics per level, and per level and task ("clip:caption", "event:qa", ...); tokenised once."""
    gts = scorer.tokenize({r.id: [r.answer] for r in rows})
    res = scorer.tokenize({r.id: [answers[r.id]] for r in rows})
    groups: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        groups[row.level].append(row.id)
        groups[f"{row.level}:{row.task}"].append(row.id)
    return {name: scorer.score_tokenized({i: gts[i] for i in ids}, {i: res[i] for i in ids})
            for name, ids in sorted(groups.items())}


def scorer_auc(model, store, release: Path, device="cpu", memo: Optional[dict] = None) -> dict:
    """Frame-level ROC AUC of the anomaly scorer over all test videos' frames, pooled."""
    from hivau.models.inference import frame_scores
    from hivau.models.scorer import frame_labels, roc_auc

    labels, scores = [], []
    videos = video_labels(release, "test")
    for v in videos:
        n, fps = store.length(v.media)
        labels.append(frame_labels(n, fps, v.events))
        scores.append(frame_scores(model, store, v.media, device, memo))
    if not videos:
        return {"auc": None, "videos": 0}
    labels, scores = np.concatenate(labels), np.concatenate(scores)
    auc = roc_auc(labels, scores)
    return {"auc": None if np.isnan(auc) else auc, "videos": len(videos), "frames": int(len(labels)),
            "anomalous_frames": int(labels.sum())}


def headline(metrics: dict) -> dict:
    """The figures a new model must not fall below: mean BLEU-4 and CIDEr over levels, and scorer AUC."""
    levels = [metrics["text"][k] for k in ("clip", "event", "video") if metrics["text"].get(k, {}).get("n")]

    def mean(key: str) -> Optional[float]:
        return float(np.mean([m[key] for m in levels])) if levels else None

    return {"bleu4": mean("BLEU-4"), "cider": mean("CIDEr"), "auc": metrics["scorer"].get("auc")}


def not_worse(new: dict, old: Optional[dict], tolerance: float = 0.01) -> tuple[bool, list[str]]:
    """True when no headline figure of `new` is below `old`'s by more than `tolerance`; and the reasons."""
    if not old:
        return True, ["no previous model"]
    reasons = []
    for key, value in new.items():
        before = old.get(key)
        if value is not None and before is not None and value < before - tolerance:
            reasons.append(f"{key} fell from {before:.4f} to {value:.4f}")
    return not reasons, reasons or ["no headline figure fell"]


def evaluate(model_dir: str | Path, release: str | Path, out: Optional[str | Path] = None,
             samplers: Sequence[str] = SAMPLERS, batch_size: int = 16, max_rows: Optional[int] = None,
             meteor: bool = True, cache: Optional[Path] = None) -> dict:
    import torch

    from hivau.models.inference import frame_plan

    model_dir, release = Path(model_dir), Path(release).resolve()
    config = read_config(model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(model_dir, device)
    train_cfg = TrainConfig.model_validate({k: v for k, v in config.get("train", {}).items()
                                            if k in TrainConfig.model_fields})
    out = Path(out) if out else model_dir
    out.mkdir(parents=True, exist_ok=True)
    store = FrameStore(cache or out / "eval_cache", model.cfg.frame_size, model.cfg.motion_mask,
                       model.cfg.motion_threshold)
    max_new = getattr(model.cfg, "max_new_tokens", None) or model.cfg.max_answer_tokens
    rows = read_release_rows(release, "test", by_id=True)[:max_rows]
    if not rows:
        raise ValueError(f"{release} has no test rows to evaluate on")
    torch.manual_seed(0)
    memo: dict = {}  # frame scores per media file, shared by the samplers and the AUC
    plan = frame_plan(model, store, release, rows, train_cfg, device, sampler=train_cfg.sampler, memo=memo)
    answers = generate_answers(model, store, rows, plan, batch_size, max_new)
    # the same answers in `hivau-eval --predictions` form, so the two paths can be compared
    (out / "predictions.jsonl").write_text("".join(json.dumps({"id": r.id, "answer": answers[r.id]}) + "\n"
                                                   for r in rows))
    long_rows = [r for r in rows if r.level in ("event", "video")]
    with CaptionScorer(meteor) as scorer:
        metrics = {"model": str(model_dir), "release": str(release), "sampler": train_cfg.sampler,
                   "text": score_rows(rows, answers, scorer), "scorer": scorer_auc(model, store, release, device, memo)}
        metrics["protocol"] = holmes_protocol(rows, answers, scorer, metrics["text"])[1]  # Holmes-VAU's figures
        ablation = {}
        for name in samplers:
            said = answers
            if name != train_cfg.sampler:
                picked = frame_plan(model, store, release, long_rows, train_cfg, device, name, memo)
                said = generate_answers(model, store, long_rows, picked, batch_size, max_new)
            ablation[name] = {lvl: m for lvl, m in score_rows(long_rows, said, scorer).items() if ":" not in lvl}
    metrics["ablation"] = ablation
    metrics["headline"] = headline(metrics)
    metrics["examples"] = [{"id": r.id, "prompt": r.prompt, "reference": r.answer, "answer": answers[r.id]}
                           for r in rows[:20]]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "metrics.md").write_text(metrics_table(metrics))
    return metrics


def metrics_table(metrics: dict, previous: Optional[dict] = None) -> str:
    lines = ["| group | n | " + " | ".join(TEXT_METRICS) + " |", "|" + "---|" * (len(TEXT_METRICS) + 2)]
    lines += [f"| {r['group']} | {r['n']} | " + " | ".join(fmt(r[k]) for k in TEXT_METRICS) + " |"
              for r in metrics_rows(metrics)]
    lines += ["", f"Scorer frame AUC: {fmt(metrics['scorer'].get('auc'))} over {metrics['scorer'].get('videos')} "
                  "test videos", "", "| sampler | level | BLEU-4 | CIDEr | METEOR |", "|---|---|---|---|---|"]
    for name, levels in metrics.get("ablation", {}).items():
        lines += [f"| {name} | {lvl} | {fmt(m.get('BLEU-4'))} | {fmt(m.get('CIDEr'))} | {fmt(m.get('METEOR'))} |"
                  for lvl, m in levels.items()]
    if previous:
        lines += ["", "| headline | previous | this |", "|---|---|---|"]
        lines += [f"| {k} | {fmt(previous['headline'].get(k))} | {fmt(v)} |" for k, v in metrics["headline"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="hivau-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model folder written by hivau-train")
    parser.add_argument("--release", help="a release folder (its data/test.parquet is scored; with --predictions "
                                          "also its vau/test.parquet)")
    parser.add_argument("--predictions", help="a JSONL of {id, answer} from any model: scored without a model, "
                                              "Holmes-VAU's protocol beside our table (hivau.models.holmes_protocol)")
    parser.add_argument("--references", help="with --predictions, instead of --release: a HIVAU-format test JSONL "
                                             "(id, type, task, video, prompt, anwser) or a VAU-R1 test CSV "
                                             "(annotations/test_*.csv; ids \"{Video Name}:choice|grounding|classify\")")
    parser.add_argument("--strict", action="store_true", help="with --predictions: exit 1 if ids are missing or unknown")
    parser.add_argument("--out", help="where metrics.json goes (default: the model folder; with --predictions, "
                                      "FILE's folder / <FILE stem>-eval)")
    parser.add_argument("--previous", help="metrics.json of the model to compare with")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-rows", type=int)
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java)")
    args = parser.parse_args(argv)
    if args.predictions:
        return score_predictions(args, parser)
    if not (args.model and args.release) or args.references:
        parser.error("give --model and --release (or --predictions FILE with --release or --references)")
    metrics = evaluate(args.model, args.release, args.out, batch_size=args.batch_size, max_rows=args.max_rows,
                       meteor=not args.no_meteor)
    previous = json.loads(Path(args.previous).read_text()) if args.previous else None
    print(metrics_table(metrics, previous))
    if previous:
        ok, why = not_worse(metrics["headline"], previous.get("headline"))
        print(("not worse than the previous model: " if ok else "worse than the previous model: ") + "; ".join(why))


if __name__ == "__main__":
    main()
