"""Declared splits: a batch built with `--split test` (an official test file) lands in the test split of every
release at every level, a video declared for both splits is a reasoned failure, and hivau-eval says when a
prediction file answers train rows."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from test_batches import _build, _tiny_batch

from hivau.models.holmes_protocol import coverage_lines, evaluate_predictions
from hivau.schemas import reasons
from hivau.tasks.release.publish import ReleaseSettings, build_release
from hivau.workspace import Workspace

pytestmark = pytest.mark.prefect_server

TRAIN = ["tr1", "tr2", "v=1djr6Yu3rVQ__#1_label_B4-0-0"]
TEST = ["te1", "te2"]


def released_rows(release) -> dict[str, list[dict]]:
    return {split: pq.read_table(release / "data" / f"{split}.parquet").to_pylist() for split in ("train", "test")}


def test_declared_batches_keep_their_split_at_every_level(prefect_api, tmp_path):
    ws = tmp_path / "ws"
    train = _tiny_batch(tmp_path / "train", TRAIN)
    test = _tiny_batch(tmp_path / "test", TEST)
    _build(ws, train / "videos", train / "ann.json", batch="official-train", split="train")
    _build(ws, test / "videos", test / "ann.json", batch="official-test", split="test")
    # half the videos would go to test by hash; the declarations must win for every one of them
    release = build_release(Workspace.at(ws), ReleaseSettings(include_unreviewed=True, test_fraction=0.5))
    rows = released_rows(release)
    for split, videos in (("train", TRAIN), ("test", TEST)):
        assert {r["source_video"] for r in rows[split]} == set(videos), split
        assert {r["level"] for r in rows[split]} == {"clip", "event", "video"}, split
        assert all(f"/{split}/" in r["media_path"] for r in rows[split]), split
        hivau = [json.loads(line) for line in (release / "hivau" / f"{split}.jsonl").read_text().splitlines()]
        assert {h["video"].split("/")[2] for h in hivau} == {split}  # {dataset}/{clips,events,videos}/{split}/
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["split_sources"] == [
        {"split": "test", "batch": "official-test", "chosen_by": "declared", "videos": 2},
        {"split": "train", "batch": "official-train", "chosen_by": "declared", "videos": 3}]
    card = (release / "README.md").read_text()
    assert "| test | official-test | declared | 2 |" in card

    # a later file that lists te1 for training: te1 stays in test, and the run says why
    wrong = _tiny_batch(tmp_path / "wrong", ["te1", "extra"])
    summary = _build(ws, wrong / "videos", wrong / "ann.json", batch="mislabelled", split="train")
    assert summary["quarantined_by_reason"] == {reasons.SPLIT_CONFLICT: 1}
    (conflict,) = [q for q in pq.read_table(ws / "manifests/quarantine.parquet").to_pylist()
                   if q["reason"] == reasons.SPLIT_CONFLICT]
    assert conflict["item_id"] == "te1" and "declared 'test' by batch official-test" in conflict["detail"]
    # an `auto` batch that lists te2 again takes the record over but not out of test
    again = _tiny_batch(tmp_path / "again", ["te2"], caption="a woman runs")
    _build(ws, again / "videos", again / "ann.json", batch="second-look")
    videos = {v["video_id"]: v for v in pq.read_table(ws / "manifests/videos.parquet").to_pylist()}
    assert (videos["te1"]["batch"], videos["te1"]["split"]) == ("official-test", "test")
    assert (videos["te2"]["batch"], videos["te2"]["split"]) == ("second-look", "test")
    assert (videos["extra"]["batch"], videos["extra"]["split"]) == ("mislabelled", "train")
    second = released_rows(build_release(Workspace.at(ws), ReleaseSettings(include_unreviewed=True, test_fraction=0.5)))
    assert {r["source_video"] for r in second["test"]} == set(TEST)

    # predictions that answer a train row: scored on test rows only, and said
    predictions = tmp_path / "predictions.jsonl"
    picked = [rows["test"][0], rows["train"][0]]
    predictions.write_text("".join(json.dumps({"id": r["id"], "answer": r["answer"]}) + "\n" for r in picked))
    metrics = evaluate_predictions(predictions, release, out=tmp_path / "eval", meteor=False)
    assert metrics["coverage"]["train_ids"] == [rows["train"][0]["id"]]
    assert any("train split" in line for line in coverage_lines(metrics["coverage"]))
