"""Holmes-VAU's protocol (`hivau.models.holmes_protocol`, `hivau-eval --predictions`) on strings whose scores are known."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hivau.models.holmes_protocol import Reference, holmes_protocol, match, read_hivau_references, read_predictions

JAVA = shutil.which("java")
# pycocoevalcap's PTBTokenizer (used by every metric) and METEOR both run Java
needs_java = pytest.mark.skipif(not JAVA, reason="pycocoevalcap's PTBTokenizer runs Java")
BIN = Path(sys.executable).parent
SAME = "a man hits the dog with a stick"
OTHER = "cars wait quietly at red lights"  # no token in common with SAME


def _score(rows: list[tuple[str, str, str, str]], meteor: bool = False) -> tuple[dict, dict]:
    """rows of (level, task, reference, answer) -> (our table, the protocol)."""
    from hivau.models.metrics import CaptionScorer

    refs = [Reference(str(i), level, task, ref) for i, (level, task, ref, _) in enumerate(rows)]
    answers = {str(i): answer for i, (*_, answer) in enumerate(rows)}
    with CaptionScorer(meteor) as scorer:
        return holmes_protocol(refs, answers, scorer)


@needs_java
def test_identical_answers_score_the_maximum_and_disjoint_ones_nothing():
    _, same = _score([("clip", "caption", SAME, SAME)])
    _, other = _score([("clip", "caption", SAME, OTHER)])
    assert same["levels"]["clip"]["BLEU"] == pytest.approx(4.0, abs=1e-6)
    assert same["levels"]["clip"]["ROUGE-L"] == pytest.approx(1.0)
    assert other["levels"]["clip"]["BLEU"] == pytest.approx(0.0, abs=1e-6)
    assert other["levels"]["clip"]["ROUGE-L"] == 0.0


@needs_java
def test_per_sample_bleu_by_hand():
    # "a b c d" against "a b c e": n-gram precisions 3/4, 2/3, 1/2, 0/1, equal lengths (no brevity penalty);
    # BLEU-4 is not 0 but (1/4 * 1e-15)^(1/4) from pycocoevalcap's additive smoothing
    _, p = _score([("clip", "caption", "a b c e", "a b c d")])
    row = p["levels"]["clip"]
    assert row["BLEU-1"] == pytest.approx(0.75, abs=1e-6)
    assert row["BLEU-2"] == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert row["BLEU-3"] == pytest.approx(0.25 ** (1 / 3), abs=1e-6)
    assert row["BLEU-4"] == pytest.approx((0.25 * 1e-15) ** 0.25, rel=1e-3)
    assert row["BLEU"] == pytest.approx(0.75 + np.sqrt(0.5) + 0.25 ** (1 / 3), abs=1e-3)
    assert row["ROUGE-L"] == pytest.approx(0.75)  # LCS 3 of 4 both ways: F = 0.75 whatever beta


@needs_java
def test_bleu_is_the_sum_of_per_sample_means_not_the_corpus_bleu():
    from pycocoevalcap.bleu.bleu import Bleu

    from hivau.models.metrics import CaptionScorer

    # ten tokens right, then two tokens wrong: corpus BLEU-1 pools them (10 / 12), the protocol averages (1 + 0) / 2
    long = "the man in the red coat runs out of shop"
    rows = [("clip", "caption", long, long), ("clip", "caption", "dog barks", "sparks fly")]
    ours, p = _score(rows)
    assert ours["clip"]["BLEU-1"] == pytest.approx(10 / 12, abs=1e-6)
    assert p["levels"]["clip"]["BLEU-1"] == pytest.approx(0.5, abs=1e-6)
    # ROUGE-L is already a per-sample mean in pycocoevalcap: (1 + 0) / 2, not a pooled LCS (10 / 12)
    assert p["levels"]["clip"]["ROUGE-L"] == ours["clip"]["ROUGE-L"] == pytest.approx(0.5)

    # and against ReactVAU's way: Bleu(4) called once per sample, BLEU-n averaged, then summed
    mixed = [("clip", "caption", SAME, "a man hits a dog"), ("clip", "caption", long, "a man runs out of the shop"),
             ("clip", "caption", "dog barks", "dog barks loudly at night")]
    _, p = _score(mixed)
    scorer = CaptionScorer(meteor=False)
    alone = []
    for ref, answer in ((r[2], r[3]) for r in mixed):
        gts, res = scorer.tokenize({"x": [ref]}), scorer.tokenize({"x": [answer]})
        alone.append(Bleu(4).compute_score(gts, res, verbose=0)[0])
    assert p["levels"]["clip"]["BLEU"] == pytest.approx(float(np.sum(np.mean(alone, axis=0))), rel=1e-9)


@needs_java
def test_tasks_are_averaged_within_a_level_whatever_their_sizes():
    # event: one "judgement" answered exactly (BLEU 4, ROUGE-L 1), three "analysis" answered off (0, 0)
    rows = [("event", "judgement", SAME, SAME)] + [("event", "analysis", SAME, OTHER)] * 3 \
        + [("clip", "caption", SAME, SAME), ("clip", "caption", SAME, OTHER)]
    ours, p = _score(rows)
    event = p["levels"]["event"]
    assert event["n"] == 4 and sorted(event["tasks"]) == ["analysis", "judgement"]
    assert event["BLEU"] == pytest.approx((4 + 0) / 2, abs=1e-6)
    assert event["ROUGE-L"] == pytest.approx((1 + 0) / 2)
    assert event["CIDEr"] == pytest.approx((ours["event:judgement"]["CIDEr"] + ours["event:analysis"]["CIDEr"]) / 2)
    # pooled over the level's four samples, as ReactVAU's hivau_utils does
    assert p["pooled"]["event"]["BLEU"] == pytest.approx(4 / 4, abs=1e-6)
    assert p["pooled"]["event"]["ROUGE-L"] == pytest.approx(1 / 4)
    # one task: the level's figure is its corpus figure
    assert p["levels"]["clip"]["BLEU"] == pytest.approx(p["pooled"]["clip"]["BLEU"]) == pytest.approx(2.0, abs=1e-6)
    assert p["levels"]["clip"]["CIDEr"] == pytest.approx(ours["clip"]["CIDEr"])


@needs_java
def test_meteor_over_each_task_corpus_then_averaged():
    rows = [("video", "description", SAME, SAME), ("video", "description", OTHER, OTHER),
            ("video", "analysis", SAME, OTHER), ("video", "analysis", OTHER, SAME)]
    ours, p = _score(rows, meteor=True)
    assert ours["video:description"]["METEOR"] > 0.9 and ours["video:analysis"]["METEOR"] == pytest.approx(0.0)
    assert p["tasks"]["video:description"]["METEOR"] == ours["video:description"]["METEOR"]
    assert p["levels"]["video"]["METEOR"] == pytest.approx(
        (ours["video:description"]["METEOR"] + ours["video:analysis"]["METEOR"]) / 2)


def test_readers_match_ids_as_strings_and_refuse_ambiguity(tmp_path):
    refs = tmp_path / "test.jsonl"
    refs.write_text("\n".join(json.dumps(r) for r in [
        {"id": 0, "type": "clip", "task": "caption", "video": "v/0.mp4", "prompt": "p", "anwser": SAME},
        {"id": 1, "type": "event", "task": "analysis", "video": "v/1.mp4", "prompt": "p", "anwser": OTHER}]) + "\n")
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "0", "answer": "x"}\n\n{"id": 7, "anwser": null}\n')
    references = read_hivau_references(refs)
    assert references[1] == Reference("1", "event", "analysis", OTHER)
    answers, coverage = match(references, read_predictions(preds))
    assert answers == {"0": "x", "1": ""}
    assert (coverage["missing_ids"], coverage["unknown_ids"], coverage["scored"]) == (["1"], ["7"], 1)

    preds.write_text('{"id": 0, "answer": "reference", "pred": "prediction"}\n')  # ReactVAU's predictions.json rows
    with pytest.raises(ValueError, match="exactly one of"):
        read_predictions(preds)
    preds.write_text('{"id": 0, "answer": "a"}\n{"id": "0", "answer": "b"}\n')
    with pytest.raises(ValueError, match="appears twice"):
        read_predictions(preds)


def test_scoring_modules_import_without_torch():
    code = "import sys; sys.modules['torch'] = None; import hivau.models.holmes_protocol, hivau.models.evaluate"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@needs_java
def test_cli_scores_a_hivau_test_jsonl_and_reports_what_is_missing(tmp_path):
    rows = [(0, "clip", "caption", SAME), (1, "clip", "caption", OTHER), (2, "event", "judgement", SAME),
            (3, "event", "analysis", OTHER), (4, "video", "description", SAME)]
    refs = tmp_path / "merge_instruction_test_final.jsonl"
    refs.write_text("".join(json.dumps({"id": i, "type": lvl, "task": task, "video": f"x/{i}.mp4", "prompt": "?",
                                        "anwser": ref}) + "\n" for i, lvl, task, ref in rows))
    preds = tmp_path / "preds.jsonl"
    # id 3 left out; id 99 is no test row; ids given as int and as str
    preds.write_text("".join(json.dumps({"id": key, "answer": answer}) + "\n" for key, answer in
                             [(0, SAME), ("1", OTHER), ("2", SAME), (4, SAME), (99, SAME)]))
    out = tmp_path / "eval"
    cmd = [str(BIN / "hivau-eval"), "--predictions", str(preds), "--references", str(refs), "--out", str(out),
           "--strict"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]  # --strict: missing and unknown ids fail the run
    assert "1 references have no prediction (scored as empty answers): 3" in proc.stderr
    assert "1 prediction ids are in no reference (ignored): 99" in proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["coverage"]["missing_ids"] == ["3"] and metrics["coverage"]["unknown_ids"] == ["99"]
    levels = metrics["protocol"]["levels"]
    assert list(levels) == ["clip", "event", "video"]
    assert levels["clip"]["BLEU"] == pytest.approx(4.0, abs=1e-6) and levels["clip"]["ROUGE-L"] == pytest.approx(1.0)
    # event: judgement exact (ROUGE-L 1), analysis unanswered (0): averaged over the two tasks
    assert levels["event"]["ROUGE-L"] == pytest.approx(0.5) and levels["event"]["BLEU"] == pytest.approx(2.0, abs=1e-6)
    assert (levels["clip"]["METEOR"] is not None) == bool(JAVA)
    md = (out / "metrics.md").read_text()
    assert md == proc.stdout.rstrip("\n") + "\n"
    assert "| clip | 2 | caption | 4.0000 |" in md and "| 0.9130 |" in md and "| event:analysis | 1 |" in md


@needs_java
def test_cli_against_a_release_with_half_the_answers_right(demo_release, tmp_path):
    import pandas as pd

    from hivau.models.evaluate import score_rows
    from hivau.models.metrics import CaptionScorer
    from hivau.schemas.records import read_release_rows

    test = pd.read_parquet(demo_release / "data" / "test.parquet").sort_values("id")
    right = set(test.id.iloc[1::2])
    # the rest answered with tokens no reference has (ROUGE-L 0), the first left out (missing, scored as "empty").
    # Capitalised like the references and first in order: PTBTokenizer reads a corpus as one stream, so a line
    # ending "13.0 s." keeps "s." as an abbreviation when the next line starts in lower case
    dropped = test.id.iloc[0]
    assert "empty" not in test.answer.iloc[0].lower()
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": r.id, "answer": r.answer if r.id in right else "Qqzx vvkw."}) + "\n"
                             for r in test.itertuples() if r.id != dropped))
    out = tmp_path / "eval"
    proc = subprocess.run([str(BIN / "hivau-eval"), "--predictions", str(preds), "--release", str(demo_release),
                           "--out", str(out), "--no-meteor"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["coverage"]["missing_ids"] == [dropped] and metrics["coverage"]["unknown"] == 0
    assert dropped in proc.stderr
    protocol = metrics["protocol"]
    for level, row in protocol["levels"].items():
        shares = [test[(test.level == level) & (test.task == t)].id.isin(right).mean() for t in row["tasks"]]
        # right answers' share, per task, averaged; up to the stream effect above: a right answer ending "13.0 s." (a
        # "when" answer, a chain's conclusion) may tokenise as "s." in one corpus and "s ." in the other, by what follows
        assert row["ROUGE-L"] == pytest.approx(float(np.mean(shares)), abs=0.01)
        assert 0.0 <= row["BLEU"] <= 4.0
    # the model path's call (its rows, its `score_rows` table) gives the same protocol
    rows = read_release_rows(demo_release, "test", by_id=True)
    answers = {r["id"]: r["answer"] for r in map(json.loads, preds.read_text().splitlines())}
    answers[dropped] = ""
    with CaptionScorer(meteor=False) as scorer:
        text = score_rows(rows, answers, scorer)
        _, again = holmes_protocol(rows, answers, scorer, text)
    assert text == metrics["text"]
    assert again == protocol
