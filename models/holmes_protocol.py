"""Any model's answers scored by Holmes-VAU's text protocol beside ours: `hivau-eval --predictions FILE.jsonl`.

Holmes-VAU (arXiv 2412.06171) releases no evaluation code; Table 2's caption defines its "BLEU" as the sum
of BLEU-1..4, and ReactVAU's reconstruction (github.com/huiyuiui/ReactVAU-code,
`eval_utils/hivau/hivau_utils.py`, pycocoevalcap with PTBTokenizer for every metric) fixes the rest. What
is implemented here, per level (clip / event / video):

1. every answer and reference is PTB-tokenised once (pycocoevalcap; an empty text becomes "empty", as in
   `CaptionScorer`, because pycocoevalcap's scorers need a token). The tokenizer reads all answers as one
   stream, so a line ending like "13.0 s." can keep "s." when the next line starts in lower case; ReactVAU
   tokenises BLEU's and ROUGE's inputs one sample at a time, so the two can differ on such lines;
2. for each (level, task) group: BLEU-n is the mean over the group's samples of the per-sample BLEU-n
   (pycocoevalcap's `Bleu(4)` second output: sentence-level, "closest" reference length, additive
   1e-15 / 1e-9 smoothing only, the same numbers ReactVAU gets by calling `Bleu` once per sample), and
   "BLEU" = BLEU-1 + BLEU-2 + BLEU-3 + BLEU-4 (so 4.0 at most); CIDEr (CIDEr-D, IDF from the group's
   references) and METEOR (the Java scorer's aggregate) over the group's corpus; ROUGE-L the mean of the
   per-sample ROUGE-L F (beta 1.2), which is what pycocoevalcap's `Rouge` returns;
3. the level's figure for each metric is the unweighted mean over its task groups (clip has only
   "caption", so there it is the level's corpus figure).

ReactVAU's `hivau_utils.py` pools a level's tasks into one corpus instead (its later `transform_metric.py`
averages per-task figures but skips tasks scoring exactly 0); the pooled figures are reported too, as
"pooled", so both readings can be compared with the paper. References without a prediction are scored as
empty answers (ReactVAU drops failed samples) and are listed, as are prediction ids no reference has.

Verifiable tasks are scored beside (`hivau.models.rewards.vau_metrics`, VAU-R1's protocol): a release's
`vau/test.parquet` rows, answered under their ids, or VAU-R1's test CSV given as `--references FILE.csv` (ids
`"{Video Name}:choice"`, `":grounding"`, `":classify"`, see `read_vau_r1_csv`). A release's text rows and its
verifiable tasks are each scored when some prediction answers one of them (the text rows also when none answers
either); a release with only verifiable tasks is valid.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from hivau.models.metrics import TEXT_METRICS, CaptionScorer, fmt, metrics_rows
from hivau.models.rewards import IOU_THRESHOLDS, read_vau_r1_csv, vau_metrics
from hivau.schemas.records import read_release_ids, read_release_rows, read_vau_rows

PROTOCOL_METRICS = ("BLEU", "CIDEr", "METEOR", "ROUGE-L")
BLEU_N = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")
# the answer's key in a predictions line: ours, HIVAU's misspelling, and the usual alternatives
ANSWER_KEYS = ("answer", "anwser", "prediction", "pred")
LEVEL_ORDER = ("clip", "event", "video")
# arXiv 2412.06171, Table 2, the Holmes-VAU row (HIVAU-70k test set)
PAPER_TABLE2 = {"clip": {"BLEU": 0.913, "CIDEr": 0.467, "METEOR": 0.190, "ROUGE-L": 0.329},
                "event": {"BLEU": 0.804, "CIDEr": 1.519, "METEOR": 0.165, "ROUGE-L": 0.370},
                "video": {"BLEU": 0.566, "CIDEr": 1.437, "METEOR": 0.121, "ROUGE-L": 0.355}}


@dataclass(frozen=True)
class Reference:
    """One test row: the fields scoring needs (`score_rows` takes these as it takes a release's rows)."""

    id: str
    level: str
    task: str
    answer: str


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(obj, dict) or "id" not in obj:
            raise ValueError(f"{path}:{number}: expected an object with an 'id'")
        yield number, obj


def _text(value, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}: the answer must be a string, got {type(value).__name__}")
    return value


def read_predictions(path: str | Path) -> dict[str, str]:
    """id (as str) -> answer; exactly one of ANSWER_KEYS per line (two would be ambiguous: ReactVAU's
    files hold the reference as "answer" beside "pred"); a repeated id is an error."""
    out: dict[str, str] = {}
    for number, obj in _jsonl(Path(path)):
        keys = [k for k in ANSWER_KEYS if k in obj]
        if len(keys) != 1:
            raise ValueError(f"{path}:{number}: expected exactly one of {', '.join(ANSWER_KEYS)}, found "
                             f"{keys or 'none'}")
        key = str(obj["id"])
        if key in out:
            raise ValueError(f"{path}:{number}: id {key} appears twice")
        out[key] = _text(obj[keys[0]], f"{path}:{number}")
    return out


def read_hivau_references(path: str | Path) -> list[Reference]:
    """A HIVAU-format test JSONL (`id, type, task, video, prompt, anwser`; `answer` also accepted)."""
    out, seen = [], set()
    for number, obj in _jsonl(Path(path)):
        missing = [k for k in ("type", "task") if k not in obj]
        if missing or not ("anwser" in obj or "answer" in obj):
            raise ValueError(f"{path}:{number}: a HIVAU test row needs type, task and anwser")
        key = str(obj["id"])
        if key in seen:
            raise ValueError(f"{path}:{number}: id {key} appears twice")
        seen.add(key)
        answer = obj["anwser"] if "anwser" in obj else obj["answer"]
        out.append(Reference(key, str(obj["type"]), str(obj["task"]), _text(answer, f"{path}:{number}")))
    return out


def read_release_references(release: str | Path) -> list[Reference]:
    """A release's test split (`data/test.parquet`), in id order; none when the release has no text rows."""
    return [Reference(r.id, r.level, r.task, r.answer or "")
            for r in read_release_rows(release, "test", by_id=True, missing_ok=True)]


def match(references: list[Reference], predictions: dict[str, str]) -> tuple[dict[str, str], dict]:
    """An answer for every reference ("" where none was given) and the coverage report."""
    ids = {r.id for r in references}
    missing = [r.id for r in references if r.id not in predictions]
    unknown = sorted(k for k in predictions if k not in ids)
    answers = {r.id: predictions.get(r.id, "") for r in references}
    return answers, {"references": len(references), "predictions": len(predictions),
                     "scored": len(references) - len(missing), "missing": len(missing), "missing_ids": missing,
                     "unknown": len(unknown), "unknown_ids": unknown}


def groups(rows) -> dict[str, list[str]]:
    """ids per level and per "level:task", the groups `score_rows` reports."""
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row.level, []).append(row.id)
        out.setdefault(f"{row.level}:{row.task}", []).append(row.id)
    return dict(sorted(out.items()))


def per_sample_bleu(gts: dict[str, list[str]], res: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """id -> its own BLEU-1..4 (tokenised input); a sample's score does not depend on the others."""
    from pycocoevalcap.bleu.bleu import Bleu

    _, scores = Bleu(4).compute_score(gts, {k: res[k] for k in gts}, verbose=0)
    return dict(zip(gts, np.asarray(scores, dtype=float).T))


def protocol_row(corpus: dict, bleu: list[np.ndarray]) -> dict:
    """One group's protocol figures: per-sample BLEU-n means and their sum, and the corpus figures of
    `CaptionScorer.score_tokenized` for CIDEr, METEOR and ROUGE-L (already the per-sample mean)."""
    means = np.mean(bleu, axis=0)
    return {"n": corpus["n"], "BLEU": float(means.sum()), **{k: float(v) for k, v in zip(BLEU_N, means)},
            "CIDEr": corpus["CIDEr"], "METEOR": corpus["METEOR"], "ROUGE-L": corpus["ROUGE-L"]}


def average_tasks(task_rows: dict[str, dict]) -> dict:
    """A level's figures: the unweighted mean of its task groups' (METEOR None if any is None)."""
    rows = list(task_rows.values())
    out: dict = {"n": sum(r["n"] for r in rows), "tasks": [name.split(":", 1)[1] for name in task_rows]}
    for key in ("BLEU", *BLEU_N, "CIDEr", "METEOR", "ROUGE-L"):
        values = [r[key] for r in rows]
        out[key] = None if any(v is None for v in values) else float(np.mean(values))
    return out


def _level_key(name: str) -> tuple:
    return (LEVEL_ORDER.index(name) if name in LEVEL_ORDER else len(LEVEL_ORDER), name)


def holmes_protocol(rows, answers: dict[str, str], scorer, text: Optional[dict] = None) -> tuple[dict, dict]:
    """(our table, the protocol) for rows with id / level / task / answer; `text` reuses a `score_rows`
    result computed on the same rows and answers, which leaves one tokenisation and per-sample BLEU."""
    gts = scorer.tokenize({r.id: [r.answer] for r in rows})
    res = scorer.tokenize({r.id: [answers[r.id]] for r in rows})
    named = groups(rows)
    if text is None:
        text = {name: scorer.score_tokenized({i: gts[i] for i in ids}, {i: res[i] for i in ids})
                for name, ids in named.items()}
    bleu = per_sample_bleu(gts, res)
    by_group = {name: protocol_row(text[name], [bleu[i] for i in ids]) for name, ids in named.items()}
    levels = sorted((n for n in named if ":" not in n), key=_level_key)
    protocol = {"levels": {lvl: average_tasks({n: r for n, r in by_group.items() if n.startswith(f"{lvl}:")})
                           for lvl in levels},
                "tasks": {n: r for n, r in by_group.items() if ":" in n},
                "pooled": {lvl: by_group[lvl] for lvl in levels}}
    return text, protocol


def _references(release, references) -> tuple[list[Reference], list]:
    """(text references, verifiable-task references) of a release, a HIVAU test JSONL or a VAU-R1 test CSV."""
    if release is not None:
        return read_release_references(release), read_vau_rows(release, "test", missing_ok=True)
    if Path(references).suffix.lower() == ".csv":
        return [], read_vau_r1_csv(references)
    return read_hivau_references(references), []


def evaluate_predictions(predictions: str | Path, release: Optional[str | Path] = None,
                         references: Optional[str | Path] = None, out: Optional[str | Path] = None,
                         meteor: bool = True) -> dict:
    """Score a predictions JSONL against a release's test split (text rows and verifiable tasks), a HIVAU test
    JSONL or a VAU-R1 test CSV; writes metrics.json and metrics.md to `out` (default: FILE's folder /
    "<FILE stem>-eval")."""
    if (release is None) == (references is None):
        raise ValueError("give exactly one of a release folder, a HIVAU-format references JSONL or a VAU-R1 test CSV")
    predictions = Path(predictions)
    text_refs, vau_refs = _references(release, references)
    if not text_refs and not vau_refs:
        raise ValueError(f"{release or references} has no test rows to score against")
    given = read_predictions(predictions)
    answered_text = any(r.id in given for r in text_refs)
    answered_vau = any(r.id in given for r in vau_refs)
    score_text = bool(text_refs) and (answered_text or not answered_vau)
    score_vau = bool(vau_refs) and (answered_vau or not score_text)
    answers, coverage = match((text_refs if score_text else []) + (vau_refs if score_vau else []), given)
    coverage["not_scored"] = {part: len(refs) for part, refs, scored in
                              (("text", text_refs, score_text), ("vau", vau_refs, score_vau)) if refs and not scored}
    if release is not None:  # a train row answered: the model may have been trained on what it is scored on
        train = read_release_ids(release, "train") | {r.id for r in read_vau_rows(release, "train", missing_ok=True)}
        coverage["train_ids"] = [i for i in coverage["unknown_ids"] if i in train]
        coverage["train"] = len(coverage["train_ids"])
    text, protocol = {}, None
    if score_text:
        with CaptionScorer(meteor) as scorer:
            text, protocol = holmes_protocol(text_refs, answers, scorer)
    metrics = {"predictions": str(predictions), "references": str(release or references), "coverage": coverage,
               "text": text, "protocol": protocol}
    if score_text:
        metrics["paper"] = PAPER_TABLE2
    if score_vau:
        metrics["vau"] = vau_metrics(vau_refs, answers)
    out = Path(out) if out else predictions.parent / f"{predictions.stem}-eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "metrics.md").write_text(protocol_table(metrics))
    return metrics


def _ids(ids: list[str], limit: int = 20) -> str:
    return ", ".join(ids[:limit]) + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def coverage_lines(coverage: dict) -> list[str]:
    """What was not scored as given, in words (never left silent)."""
    lines = [f"{coverage['references']} references, {coverage['predictions']} predictions, "
             f"{coverage['scored']} references answered"]
    if coverage["missing"]:
        lines.append(f"{coverage['missing']} references have no prediction (scored as empty answers): "
                     + _ids(coverage["missing_ids"]))
    if coverage["unknown"]:
        lines.append(f"{coverage['unknown']} prediction ids are in no reference (ignored): "
                     + _ids(coverage["unknown_ids"]))
    for part, n in coverage.get("not_scored", {}).items():
        what = "text rows (Holmes-VAU's protocol)" if part == "text" else "verifiable tasks (vau/test.parquet)"
        lines.append(f"the {n} {what} were not scored: no prediction answers one")
    if coverage.get("train"):
        lines.append(f"{coverage['train']} prediction ids are rows of the release's train split: whatever was "
                     f"trained on this release has seen those videos; only test rows are scored: "
                     + _ids(coverage["train_ids"]))
    return lines


def protocol_table(metrics: dict) -> str:
    """metrics.md: the protocol per level (with the paper's figures), per task and pooled, then ours; then the
    verifiable tasks' figures."""
    protocol, paper = metrics["protocol"], metrics.get("paper", {})
    lines = [f"Predictions: {metrics['predictions']}  ", f"References: {metrics['references']}", ""]
    lines += [f"- {line}" for line in coverage_lines(metrics["coverage"])]
    if protocol:
        lines += _text_tables(metrics, protocol, paper)
    if metrics.get("vau"):
        lines += vau_table(metrics["vau"])
    return "\n".join(lines) + "\n"


def _text_tables(metrics: dict, protocol: dict, paper: dict) -> list[str]:
    head = " | ".join(PROTOCOL_METRICS)
    lines = ["", "Holmes-VAU protocol (BLEU = sum of per-sample BLEU-1..4 means; CIDEr, METEOR over the corpus; "
             "ROUGE-L per-sample mean; tasks averaged within a level):", "",
             f"| level | n | tasks | {head} | paper " + " | paper ".join(PROTOCOL_METRICS) + " |",
             "|" + "---|" * (3 + 2 * len(PROTOCOL_METRICS))]
    for lvl, row in protocol["levels"].items():
        ref = paper.get(lvl, {})
        lines.append(f"| {lvl} | {row['n']} | {', '.join(row['tasks'])} | "
                     + " | ".join(fmt(row[k]) for k in PROTOCOL_METRICS) + " | "
                     + " | ".join(fmt(ref.get(k)) for k in PROTOCOL_METRICS) + " |")
    cols = ("BLEU", *BLEU_N, "CIDEr", "METEOR", "ROUGE-L")
    lines += ["", "The protocol per task group, and per level pooled over its tasks (ReactVAU's grouping):", "",
              "| group | n | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    named = [*protocol["tasks"].items(), *((f"{lvl} (pooled)", r) for lvl, r in protocol["pooled"].items())]
    lines += [f"| {name} | {row['n']} | " + " | ".join(fmt(row[k]) for k in cols) + " |" for name, row in named]
    lines += ["", "Our metrics (pycocoevalcap corpus BLEU-n, METEOR, ROUGE-L, CIDEr):", "",
              "| group | n | " + " | ".join(TEXT_METRICS) + " |", "|" + "---|" * (len(TEXT_METRICS) + 2)]
    lines += [f"| {r['group']} | {r['n']} | " + " | ".join(fmt(r[k]) for k in TEXT_METRICS) + " |"
              for r in metrics_rows(metrics)]
    return lines


def vau_table(vau: dict) -> list[str]:
    """The verifiable tasks' figures, one per line (fractions: VAU-R1 prints them as percentages)."""
    rows = [("all", vau["n"], "well-formed share (think / answer tags)", vau["format"]["well_formed"])]
    if "choice" in vau:
        rows.append(("choice", vau["choice"]["n"], "accuracy", vau["choice"]["accuracy"]))
    if "classify" in vau:
        c = vau["classify"]
        rows += [("classify", c["n"], "accuracy", c["accuracy"]), ("classify", c["n"], "macro-F1", c["macro_f1"]),
                 ("classify", c["n"], "normal / anomaly accuracy", c["binary_accuracy"])]
    if "detect" in vau:
        d = vau["detect"]
        rows += [("detect", d["n"], "accuracy", d["accuracy"]), ("detect", d["n"], "F1 (yes)", d["f1"])]
    if "grounding" in vau:
        a, n = vau["grounding"]["anomalous"], vau["grounding"]["normal"]
        rows += [("grounding, anomalous", a["n"], "mIoU", a["mIoU"])]
        rows += [("grounding, anomalous", a["n"], f"R@{k}", a[f"R@{k}"]) for k in IOU_THRESHOLDS]
        rows.append(("grounding, normal", n["n"], "answered [-1, -1]", n["no_span"]))
    return ["", "Verifiable tasks (VAU-R1's protocol; grounding mIoU and R@IoU over anomalous videos only, normal "
            "videos apart):", "", "| task | n | metric | value |", "|---|---|---|---|",
            *(f"| {task} | {n} | {name} | {fmt(value)} |" for task, n, name, value in rows)]


def main(args, parser) -> None:
    """`hivau-eval --predictions`: no model; exit status 1 under --strict when ids were missing or unknown."""
    if args.model or args.previous:
        parser.error("--predictions scores a file without a model: drop --model / --previous")
    if bool(args.release) == bool(args.references):
        parser.error("--predictions needs exactly one of --release DIR or --references HIVAU_TEST.jsonl | "
                     "VAU_R1_TEST.csv")
    try:
        metrics = evaluate_predictions(args.predictions, args.release, args.references, args.out,
                                       meteor=not args.no_meteor)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    coverage = metrics["coverage"]
    for line in coverage_lines(coverage)[1:]:
        print(f"warning: {line}", file=sys.stderr)
    print(protocol_table(metrics))
    if args.strict and (coverage["missing"] or coverage["unknown"]):
        sys.exit(1)
